package console

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
)

// fakeHub serves a fixed node list: the render benchmark measures the
// console, not the hub.
type fakeHub struct{ nodes []api.Node }

func (f fakeHub) ListNodes(context.Context) (*api.ListNodesResponse, error) {
	return &api.ListNodesResponse{Nodes: append([]api.Node(nil), f.nodes...)}, nil
}
func (f fakeHub) GetNode(_ context.Context, name string) (*api.Node, error) {
	return nil, fmt.Errorf("no node %s", name)
}
func (f fakeHub) Audit(context.Context, uint64, int) (*api.AuditResponse, error) {
	return &api.AuditResponse{ChainOK: true}, nil
}
func (f fakeHub) AssignBuild(context.Context, string, []byte, []byte) (*api.Node, error) {
	return nil, fmt.Errorf("not here")
}

func manyNodes(n int) []api.Node {
	roles := []string{"master", "worker", "worker", "worker", "storage"}
	states := []api.NodeState{api.NodeEnrolled, api.NodeEnrolled, api.NodeEnrolled, api.NodePending, api.NodeQuarantined, api.NodeRevoked, api.NodeFenced}
	now := time.Now()
	out := make([]api.Node, n)
	for i := range out {
		out[i] = api.Node{Name: fmt.Sprintf("node-%05d", i), Role: roles[i%len(roles)], State: states[i%len(states)],
			EKHash: strings.Repeat("ab", 32), BuildID: "2026.12.05-abcdef", CertSerial: "1f", CertNotAfter: now.Add(24 * time.Hour)}
		if out[i].State == api.NodeQuarantined {
			out[i].Reason = &api.Refusal{Check: "pcr-policy", Detail: "PCR 4: expected 0xab, got 0xcd"}
		}
	}
	return out
}

func readerCert() *x509.Certificate {
	return &x509.Certificate{Raw: []byte("reader"), Subject: pkix.Name{CommonName: "reader", Organization: []string{pki.RoleReader.Org()}}}
}

// BenchmarkOverview10k is the server time of the overview of a 10,000-node
// hub: list, count, render the whole page.
func BenchmarkOverview10k(b *testing.B) {
	c, err := New(Config{Hub: fakeHub{nodes: manyNodes(10000)}, Cert: readerCert(), Cluster: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	req := asSelf(c, httptest.NewRequest(http.MethodGet, "/", nil))
	b.ReportAllocs()
	var size int
	for b.Loop() {
		w := httptest.NewRecorder()
		c.overview(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("overview = %d", w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
}

// BenchmarkLiveRefresh10k is one poll of the live view: list, count,
// render the fragment, compare.
func BenchmarkLiveRefresh10k(b *testing.B) {
	c, err := New(Config{Hub: fakeHub{nodes: manyNodes(10000)}, Cert: readerCert()})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := c.Refresh(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

func TestOverviewOf10kNodes(t *testing.T) {
	c, err := New(Config{Hub: fakeHub{nodes: manyNodes(10000)}, Cert: readerCert()})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	c.overview(w, asSelf(c, httptest.NewRequest(http.MethodGet, "/", nil)))
	if w.Code != http.StatusOK || strings.Count(w.Body.String(), `<tr class="s-`) != PageSize {
		t.Errorf("overview of 10000 nodes: %d, %d rows, want a page of %d", w.Code, strings.Count(w.Body.String(), `<tr class="s-`), PageSize)
	}
	if !strings.Contains(w.Body.String(), "10000 nodes, page 1 of 20") || !strings.Contains(w.Body.String(), `href="/?page=1" rel="next"`) {
		t.Error("overview of 10000 nodes lacks its pager")
	}
	// The last page, filtered: node-09xxx are 1000 nodes, two pages.
	w = httptest.NewRecorder()
	c.overview(w, asSelf(c, httptest.NewRequest(http.MethodGet, "/?q=node-09&page=7", nil)))
	if body := w.Body.String(); !strings.Contains(body, "1000 nodes, page 2 of 2") || !strings.Contains(body, "node-09999") || strings.Contains(body, `href="/nodes/node-09000"`) {
		t.Error("filtered last page is wrong")
	}
	if !strings.Contains(w.Body.String(), `<tr class="total"><th>all</th><td id="total">10000</td>`) {
		t.Error("overview total is not 10000")
	}
}

// asSelf is req as auth passes it on: in a session of the console's own
// operator.
func asSelf(c *Console, req *http.Request) *http.Request {
	return req.WithContext(context.WithValue(req.Context(), ctxKey{}, &session{id: "test", op: c.self}))
}
