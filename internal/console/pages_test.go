package console

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/pki/pkitest"
	"github.com/kubedos/kubedos/internal/plan"
	"github.com/kubedos/kubedos/internal/spec"
)

func TestBuildsPage(t *testing.T) {
	h := startHub(t)
	// A third build whose SBOM was changed after signing: the page says so
	// rather than summarizing what was not signed.
	tampered, _ := testBuild(t, h.artifact, "2026-b3", map[string]string{"worker": "b3-worker"})
	if err := os.WriteFile(filepath.Join(tampered, manifest.RoleFile("worker", build.FileSBOM)), []byte(`{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// And one signed by another key.
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := testBuild(t, other, "2026-b4", map[string]string{"worker": "b4-worker"})
	b := h.consoleWith(t, pki.RoleReader, func(c *Config) { c.Builds = append(c.Builds, tampered, foreign) })
	code, body := b.get(t, "/builds")
	if code != http.StatusOK {
		t.Fatalf("GET /builds = %d: %s", code, body)
	}
	b1 := section(t, body, "b-2026-b1")
	for _, want := range []string{
		"Build 2026-b1", "in service on 1 node<", // w-3 runs b1, the worker image
		"rev-2026-b1", "signature verified with the artifact key",
		"https://slsa.dev/provenance/v1: 2 subjects, 3 resolved dependencies; builder <code>https://kubedos.io/builder/test-bench</code>",
		"<td>worker</td><td><code>b1</code></td><td>42</td>",
		"<td>3</td>", // components
		"<span>GPL-2.0-only OR MIT (1)</span>", "<span>MIT (1)</span>", "none named (1)",
		"PCR 4 <code>" + h.preds["b1"][4][:16] + "…</code>",
	} {
		if !strings.Contains(b1, want) {
			t.Errorf("build b1's section lacks %q:\n%s", want, b1)
		}
	}
	if b2 := section(t, body, "b-2026-b2"); strings.Contains(b2, "in service") {
		t.Errorf("build b2, which no node runs, is shown in service:\n%s", b2)
	}
	if b3 := section(t, body, "b-2026-b3"); !regexp.MustCompile(`roles/worker/sbom.cdx.json: sha256 [0-9a-f]+, the manifest lists`).MatchString(b3) || strings.Contains(b3, "<td>0</td>") {
		t.Errorf("a tampered SBOM is not refused:\n%s", b3)
	}
	if !strings.Contains(body, "manifest signature") || strings.Contains(body, "Build 2026-b4") {
		t.Errorf("a build signed by another key is shown as a build:\n%s", body)
	}
}

// section is the <section> of the page with the given id.
func section(t *testing.T, body, id string) string {
	t.Helper()
	i := strings.Index(body, `id="`+id+`"`)
	if i < 0 {
		t.Fatalf("no section %s in:\n%s", id, body)
	}
	j := strings.Index(body[i:], "</section>")
	return body[i : i+j]
}

func TestNodePagePredictionAuditServices(t *testing.T) {
	h := startHub(t)
	b := h.console(t, pki.RoleReader)
	code, body := b.get(t, "/nodes/w-3")
	if code != http.StatusOK {
		t.Fatalf("GET /nodes/w-3 = %d: %s", code, body)
	}
	for _, want := range []string{
		`build <a href="/builds#b-2026-b1">2026-b1</a>, source rev-2026-b1, manifest signature verified`,
		"<tr><td>4</td><td><code>" + h.preds["b1"][4] + "</code></td><td>1</td><td>matched",
		"<tr><td>7</td><td><code>" + h.preds["b1"][7] + "</code></td>",
		// The node's services as its API reports them, escaped.
		"<td>kubelet.service</td><td>active</td><td>running</td><td>restart</td><td>kubelet &lt;b&gt;</td>",
		"<td>systemd-journald.service</td><td>active</td><td>running</td><td></td>",
		// Health, planes and drift as the node's API reports them, escaped.
		`UNHEALTHY (systemd: degraded); failed units: x&lt;y&gt;.service`,
		`<tr class="bad"><td>units</td><td>no</td><td>yes</td><td class="detail">x&lt;y&gt;.service failed</td></tr>`,
		"<td>control</td><td>wg-control</td><td>up</td><td>10.77.0.23/24</td>",
		`<td>/etc/hostname</td><td>modified</td><td class="detail">w-3</td><td class="detail">&lt;evil&gt;</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("node page lacks %q", want)
		}
	}
	if !regexp.MustCompile(`<div>master at 10\.20\.0\.10:51820: [5-9]s ago</div><div>w-1: never</div>`).MatchString(body) {
		t.Error("node page lacks the plane's peers with their handshake ages")
	}
	// The hub's audit entries naming w-3 (its enrollment), not w-2's.
	audit := between(t, body, `id="node-audit"`, "</table>")
	if !strings.Contains(audit, "<td>enroll</td><td>ok</td>") {
		t.Errorf("node audit lacks w-3's enrollment:\n%s", audit)
	}
	if strings.Contains(audit, "quarantine") {
		t.Errorf("node audit of w-3 shows another node's entries:\n%s", audit)
	}
	// A reader gets no forms at all.
	if strings.Contains(body, "<form method=\"post\"") {
		t.Error("a reader's node page has action forms")
	}
	// A node whose build the console was not given says so.
	_, body = b.get(t, "/nodes/w-2")
	if !strings.Contains(body, "None of the builds this console was given has the image b1") && !strings.Contains(body, "Predicted by build") {
		t.Errorf("w-2's page says nothing of its prediction:\n%s", body)
	}
}

func between(t *testing.T, body, from, to string) string {
	t.Helper()
	i := strings.Index(body, from)
	if i < 0 {
		t.Fatalf("no %q in:\n%s", from, body)
	}
	j := strings.Index(body[i:], to)
	if j < 0 {
		j = len(body) - i
	}
	return body[i : i+j]
}

func TestPlanPage(t *testing.T) {
	h := startHub(t)
	b := h.console(t, pki.RoleReader)
	code, body := b.get(t, "/plan")
	if code != http.StatusOK {
		t.Fatalf("GET /plan = %d: %s", code, body)
	}
	if !strings.Contains(body, "the hub has recorded no convergence run yet") {
		t.Error("the plan without a run does not say why steps have no outcome")
	}
	doc := h.recordRun(t, b.c.cfg.Spec, plan.EnrollID("w-1"))
	_, body = b.get(t, "/plan")
	svg := between(t, body, `<svg xmlns="http://www.w3.org/2000/svg" id="plan-graph"`, "</svg>")
	if n := strings.Count(svg, `<g class="step `); n != len(doc.Steps) {
		t.Errorf("graph has %d step boxes, the plan %d steps", n, len(doc.Steps))
	}
	if n := strings.Count(svg, `marker-end="url(#arrow)"`); n != len(doc.Edges) {
		t.Errorf("graph has %d edges, the plan %d", n, len(doc.Edges))
	}
	if !regexp.MustCompile(`<g class="step o-failed"><title>enroll/w-1 \(enrollment\): last run failed: hub refused &lt;w-1&gt;</title>`).MatchString(svg) {
		t.Errorf("the failed step is not marked failed with its error:\n%s", svg)
	}
	if strings.Count(svg, "o-changed") != 1 || !strings.Contains(svg, `<g class="step o-unchanged">`) {
		t.Error("step outcomes are not each step's own")
	}
	if strings.Contains(svg, "<script") || strings.Contains(body, "http://") && !strings.Contains(body, `xmlns="http://www.w3.org/2000/svg"`) {
		t.Error("the graph loads or runs something")
	}
	if !strings.Contains(body, "run 1, <b>failed</b>") {
		t.Error("the page does not name the run its outcomes come from")
	}
	// Every edge runs left to right: a step's column is after its deps'.
	for _, m := range regexp.MustCompile(`d="M(\d+) \d+ C\d+ \d+ \d+ \d+ (\d+) \d+"`).FindAllStringSubmatch(svg, -1) {
		if atoi(m[1]) >= atoi(m[2]) {
			t.Errorf("edge %s runs right to left", m[0])
		}
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestPlanPageWithoutSpec(t *testing.T) {
	b := startHub(t).consoleWith(t, pki.RoleReader, func(c *Config) { c.Spec = nil })
	if _, body := b.get(t, "/plan"); !strings.Contains(body, "started without the cluster's spec") || strings.Contains(body, "<svg") {
		t.Errorf("plan page without a spec:\n%s", body)
	}
}

// recordRun records a run of s at the hub as the convergence engine does
// (operator): the first step changed, failed failed, the rest unchanged.
func (h *testHub) recordRun(t *testing.T, s *spec.ClusterSpec, failed string) plan.Document {
	t.Helper()
	g, err := plan.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := plan.NewDocument(s.Metadata.Name, g)
	if err != nil {
		t.Fatal(err)
	}
	run := &api.RunRecord{Cluster: s.Metadata.Name, Outcome: "failed", Started: time.Now(), Ended: time.Now()}
	for i, st := range doc.Steps {
		out := "unchanged"
		switch {
		case st.ID == failed:
			out = "failed"
		case i == 0:
			out = "changed"
		}
		rs := api.RunStep{ID: st.ID, Phase: st.Phase, Outcome: out, Attempts: 1}
		if out == "failed" {
			rs.Error = `hub refused <w-1>`
		}
		run.Steps = append(run.Steps, rs)
	}
	access := cluster.Access{Keys: pkitest.WriteKeys(t, h.ca, pki.RoleOperator)}
	cc, err := access.Conn(h.addr, api.HubServerName)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := api.NewRunsClient(cc).RecordRun(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	return doc
}
