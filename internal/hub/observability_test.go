package hub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/observability"
	"github.com/kubedos/kubedos/internal/pki"
)

func readerCSR(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// scraped reads which nodes a target file has Prometheus scrape.
func scraped(t *testing.T, files observability.Files, node string) bool {
	t.Helper()
	var groups []struct{ Targets []string }
	if err := json.Unmarshal(files["targets/kubedosd-"+node+".json"], &groups); err != nil {
		t.Fatalf("targets of %s: %v", node, err)
	}
	return len(groups) > 0 && len(groups[0].Targets) > 0
}

// The prometheus node gets its configuration and a reader certificate;
// the targets follow the registry; the reader certificate dies with the
// node's identity; nobody else gets either.
func TestObservabilityConfig(t *testing.T) {
	ke := newKubeEnv(t) // the reference spec: prometheus on node "prometheus"
	ke.policy["prometheus"] = "prometheus"
	ke.newKubeHub()
	ctx := context.Background()
	_, mon := ke.enrolled("prometheus", "prometheus")
	_, w1 := ke.enrolled("w-1", "worker")
	pm, _ := ke.peerOf(mon)
	pw, _ := ke.peerOf(w1)

	got, err := ke.hub.ObservabilityConfig(ctx, pm, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Enabled || got.Reader != nil || len(got.Files[observability.FileConfig]) == 0 || string(got.CAPEM) != string(ke.ca.CertPEM()) {
		t.Fatalf("answer without a CSR: enabled %v, reader %v, %d files", got.Enabled, got.Reader, len(got.Files))
	}
	if !scraped(t, got.Files, "w-1") || !scraped(t, got.Files, "prometheus") || scraped(t, got.Files, "cp-1") {
		t.Error("targets: want the enrolled w-1 and prometheus scraped, cp-1 (not enrolled) not")
	}
	before := len(auditOf(t, ke.env))

	got, err = ke.hub.ObservabilityConfig(ctx, pm, readerCSR(t))
	if err != nil {
		t.Fatal(err)
	}
	rp, err := ke.ca.Authenticate(got.Reader, ke.clock.Now(), ke.hub.Revocations())
	if err != nil || rp.Role != pki.RoleReader || rp.Name != "prometheus@prometheus" {
		t.Fatalf("reader certificate: %+v, %v", rp, err)
	}
	reader := got.Reader
	entries := auditOf(t, ke.env)
	if len(entries) != before+1 || entries[len(entries)-1].Action != ActionObservability || !strings.Contains(entries[len(entries)-1].Detail, "reader certificate") {
		t.Errorf("the issuance is not audited once: %d → %d entries", before, len(entries))
	}
	// The spec runs Kubernetes and the hub holds its CAs: a metrics
	// credential for the same key, from the Kubernetes CA, for an hour at
	// most, and the reader's life follows it.
	k := got.Kube
	if k == nil || string(got.KubeCAPEM) != string(ke.cas.Kubernetes.CertPEM()) {
		t.Fatalf("no Kubernetes metrics credential or CA: %v", k)
	}
	if _, err := k.Verify(x509.VerifyOptions{Roots: ke.cas.Kubernetes.Pool(), CurrentTime: ke.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("metrics credential against the Kubernetes CA: %v", err)
	}
	if k.Subject.CommonName != "prometheus@prometheus" || len(k.Subject.Organization) != 1 || k.Subject.Organization[0] != pki.GroupMonitoring ||
		!k.PublicKey.(*ecdsa.PublicKey).Equal(reader.PublicKey) {
		t.Errorf("metrics credential %s / %v, or not for the reader's key", k.Subject.CommonName, k.Subject.Organization)
	}
	if k.NotAfter.Sub(ke.clock.Now()) > pki.MaxKubeMonitoringLife || reader.NotAfter.After(k.NotAfter.Add(time.Minute)) {
		t.Errorf("lives: reader until %s, Kubernetes until %s; want both within the hour", reader.NotAfter, k.NotAfter)
	}
	if d := entries[len(entries)-1].Detail; !strings.Contains(d, "Kubernetes metrics credential") || !strings.Contains(d, pki.GroupMonitoring) {
		t.Errorf("audit detail %q does not name the Kubernetes credential", d)
	}
	if _, ok := got.Files[observability.FileAPIServer]; !ok {
		t.Errorf("no API server targets: %v", got.Files.Names())
	}

	// The reference spec has a grafana node: it serves the dashboards,
	// learns only where Prometheus is, and gets no certificate.
	if got.Dashboards {
		t.Error("the prometheus node serves the dashboards though the spec has a grafana node")
	}
	ke.policy["grafana"] = "grafana"
	_, gr := ke.enrolled("grafana", "grafana")
	pg, _ := ke.peerOf(gr)
	gg, err := ke.hub.ObservabilityConfig(ctx, pg, nil)
	if err != nil || !gg.Enabled || !gg.Dashboards || gg.Listen == "" || len(gg.Files) > 0 || gg.CAPEM != nil {
		t.Errorf("grafana node: %+v, %v; want where Prometheus is and nothing more", gg, err)
	}
	if _, err := ke.hub.ObservabilityConfig(ctx, pg, readerCSR(t)); !errors.Is(err, ErrForbidden) {
		t.Errorf("the grafana node asking for a reader certificate: %v, want forbidden", err)
	}
	// A worker, an operator, a reader: refused, and a worker's refusal audited.
	if _, err := ke.hub.ObservabilityConfig(ctx, pw, readerCSR(t)); !errors.Is(err, ErrForbidden) {
		t.Errorf("a worker asking: %v, want forbidden", err)
	}
	if _, err := ke.hub.ObservabilityConfig(ctx, operator, nil); !errors.Is(err, ErrForbidden) {
		t.Errorf("an operator asking: %v, want forbidden", err)
	}
	if _, err := ke.hub.ObservabilityConfig(ctx, rp, readerCSR(t)); !errors.Is(err, ErrForbidden) {
		t.Errorf("the reader certificate asking for another: %v, want forbidden", err)
	}
	if _, err := ke.hub.ObservabilityConfig(ctx, pm, []byte("not a CSR")); !errors.Is(err, ErrInvalid) {
		t.Errorf("a broken CSR: %v, want invalid", err)
	}

	// w-1 revoked: out of the targets with no hand edit.
	if err := ke.hub.Revoke(ctx, operator, "w-1", "test"); err != nil {
		t.Fatal(err)
	}
	got, err = ke.hub.ObservabilityConfig(ctx, pm, nil)
	if err != nil {
		t.Fatal(err)
	}
	if scraped(t, got.Files, "w-1") {
		t.Error("revoked w-1 is still a target")
	}
	// The prometheus node revoked: its reader certificate with it.
	if err := ke.hub.Revoke(ctx, operator, "prometheus", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := ke.ca.Authenticate(reader, ke.clock.Now(), ke.hub.Revocations()); !errors.Is(err, pki.ErrRevoked) {
		t.Errorf("the reader certificate after its node's revocation: %v, want revoked", err)
	}
	if _, err := ke.hub.ObservabilityConfig(ctx, pm, nil); err == nil {
		t.Error("a revoked prometheus node still gets its configuration")
	}
}

func auditOf(t *testing.T, e *env) []AuditEntry {
	t.Helper()
	entries, err := e.store.Audit(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}
