package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/cluster"
)

func TestEventsRendering(t *testing.T) {
	evs := []cluster.Event{
		cluster.NodeStarted{Name: "w-1", Role: "worker", EKHash: "0123456789abcdef0123", Hub: "10.20.0.10:7443", API: "10.20.0.21:7444", Console: "c.log"},
		cluster.Waiting{Text: "waiting for the hub"},
		cluster.NodeState{Name: "w-1", State: "quarantined", Reason: "pcr: 7 differs"},
	}
	var text bytes.Buffer
	pr := newProgress(&text)
	for _, e := range evs {
		pr.Event(e)
	}
	// Not a terminal: progress-only events are not printed.
	lines := strings.Split(strings.TrimSpace(text.String()), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "] w-1: started (worker, EK 0123456789abcdef…, hub 10.20.0.10:7443); node API on 10.20.0.21:7444; console c.log") ||
		!strings.HasSuffix(lines[1], "] w-1: quarantined") {
		t.Errorf("text:\n%s", text.String())
	}

	var js bytes.Buffer
	g := &globals{output: OutputJSON, stderr: &js}
	ev := g.events()
	for _, e := range evs {
		ev.Event(e)
	}
	var got []struct {
		Event string
		Text  string
		Data  map[string]any
	}
	dec := json.NewDecoder(&js)
	for dec.More() {
		var l struct {
			Event string
			Text  string
			Data  map[string]any
		}
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
	}
	if len(got) != 2 || got[0].Event != "NodeStarted" || got[1].Event != "NodeState" || got[1].Data["Reason"] != "pcr: 7 differs" {
		t.Errorf("json events %+v", got)
	}
}
