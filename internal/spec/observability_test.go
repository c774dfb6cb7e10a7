package spec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
)

func TestObservabilitySettings(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(o *Observability)
		want   ObservabilitySettings
		err    string
	}{
		{"defaults", func(*Observability) {}, ObservabilitySettings{RetentionTime: 15 * 24 * time.Hour, RetentionGiB: 0, ScrapeInterval: 15 * time.Second}, ""},
		{"set", func(o *Observability) {
			o.Retention = &Retention{Time: "72h", SizeGiB: 3}
			o.ScrapeInterval = "30s"
		}, ObservabilitySettings{RetentionTime: 72 * time.Hour, RetentionGiB: 3, ScrapeInterval: 30 * time.Second}, ""},
		{"time not a duration", func(o *Observability) { o.Retention = &Retention{Time: "15d"} }, ObservabilitySettings{}, "retention.time: \"15d\" is not a duration"},
		{"time too short", func(o *Observability) { o.Retention = &Retention{Time: "10m"} }, ObservabilitySettings{}, "outside"},
		{"time too long", func(o *Observability) { o.Retention = &Retention{Time: "9000h"} }, ObservabilitySettings{}, "outside"},
		{"size negative", func(o *Observability) { o.Retention = &Retention{SizeGiB: -1} }, ObservabilitySettings{}, "sizeGiB: -1"},
		{"size fills the disk", func(o *Observability) { o.Retention = &Retention{SizeGiB: 4096} }, ObservabilitySettings{}, "below the prometheus node's disk"},
		{"scrape not whole seconds", func(o *Observability) { o.ScrapeInterval = "7500ms" }, ObservabilitySettings{}, "whole seconds"},
		{"scrape too often", func(o *Observability) { o.ScrapeInterval = "1s" }, ObservabilitySettings{}, "whole seconds in [5s, 5m0s]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, examples.Reference)
			tt.mutate(&s.Workloads.Observability)
			got, err := s.ObservabilitySettings()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one containing %q", err, tt.err)
				}
				found := false
				for _, p := range Validate(s) {
					found = found || (p.Path == "workloads.observability" && strings.Contains(p.Message, tt.err))
				}
				if !found {
					t.Errorf("Validate does not report it: %v", Validate(s))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.RetentionGiB == 0 {
				// Half the prometheus node's disk.
				tt.want.RetentionGiB = s.prometheusDiskGiB() / 2
				if tt.want.RetentionGiB < 1 {
					t.Fatalf("reference prometheus disk %d GiB", s.prometheusDiskGiB())
				}
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestObservabilityStrictDecode(t *testing.T) {
	y := strings.Replace(string(examples.Reference), "scrapeInterval: 15s ", "scrapeInterval: 20s ", 1)
	y = strings.Replace(y, "retention: {time: 360h, sizeGiB: 32}", "retention: {time: 240h, sizeGiB: 4, days: 3}", 1)
	if !strings.Contains(y, "days: 3") || !strings.Contains(y, "scrapeInterval: 20s") {
		t.Fatal("the reference example changed: update this test")
	}
	_, err := Parse([]byte(y))
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != "workloads.observability.retention.days" {
		t.Fatalf("want one unknown-field problem at workloads.observability.retention.days, got %v", err)
	}
	doc, err := Parse([]byte(strings.Replace(y, ", days: 3", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if r := doc.Spec.Workloads.Observability; r.Retention == nil || r.Retention.Time != "240h" || r.Retention.SizeGiB != 4 || r.ScrapeInterval != "20s" {
		t.Errorf("decoded %+v", r)
	}
}
