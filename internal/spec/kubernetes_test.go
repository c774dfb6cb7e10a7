package spec

import (
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
)

func TestKubeIdentityFields(t *testing.T) {
	for _, tt := range []struct {
		name, path, msg string
		mutate          func(k *Kubernetes)
	}{
		{"domain", "workloads.kubernetes.clusterDomain", "DNS domain", func(k *Kubernetes) { k.ClusterDomain = "Cluster_Local" }},
		{"lifetime not a duration", "workloads.kubernetes", "certificateLifetime", func(k *Kubernetes) { k.CertificateLifetime = "a day" }},
		{"lifetime too long", "workloads.kubernetes", "outside", func(k *Kubernetes) { k.CertificateLifetime = "48h" }},
		{"kubelet client too long", "workloads.kubernetes", "kubeletClientCertificateLifetime", func(k *Kubernetes) { k.KubeletClientCertificateLifetime = "2h" }},
		{"kubelet client too short", "workloads.kubernetes", "outside", func(k *Kubernetes) { k.KubeletClientCertificateLifetime = "1m" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, examples.Reference)
			tt.mutate(&s.Workloads.Kubernetes)
			for _, p := range Validate(s) {
				if p.Path == tt.path && strings.Contains(p.Message, tt.msg) {
					return
				}
			}
			t.Fatalf("want a problem at %s containing %q, got %v", tt.path, tt.msg, Validate(s))
		})
	}
	k := Kubernetes{ServiceCIDR: "10.96.0.0/12", CertificateLifetime: "12h"}
	life, err := k.Lifetimes()
	if err != nil || life != (KubeLifetimes{Default: 12 * time.Hour, KubeletClient: time.Hour}) {
		t.Errorf("lifetimes %+v, %v", life, err)
	}
	if ip, err := k.FirstServiceIP(); err != nil || ip.String() != "10.96.0.1" {
		t.Errorf("first service IP %v, %v", ip, err)
	}
	if k.Domain() != "cluster.local" {
		t.Errorf("domain %q", k.Domain())
	}
}
