//go:build integration

package console

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/plan"
	"github.com/kubedos/kubedos/internal/spec"
)

// chromium finds Debian's headless-capable browser or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (apt-get install chromium): the real-browser check of the console is skipped")
	return ""
}

// headless runs one headless Chromium over the shared profile: the
// session cookie of the login stays for the next page. The console's
// certificate is self-signed; a person compares its fingerprint, the test
// tells the browser to accept it.
func headless(t *testing.T, bin, profile string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	base := []string{"--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--ignore-certificate-errors",
		"--user-data-dir=" + profile, "--window-size=1280,900"}
	if os.Geteuid() == 0 {
		base = append(base, "--no-sandbox") // Chromium refuses to run as root with its sandbox
	}
	out, err := exec.CommandContext(ctx, bin, append(base, args...)...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	// Once in a busy integration run Chromium exited 0 without writing
	// the screenshot it was asked for (2026-12-07; not reproduced since):
	// one more try, said in the log, so the file is there to look at.
	for _, a := range args {
		if file, ok := strings.CutPrefix(a, "--screenshot="); ok {
			if _, serr := os.Stat(file); serr != nil {
				t.Logf("chromium wrote no %s (exit 0, stderr not kept); trying once more", file)
				time.Sleep(2 * time.Second)
				if _, err := exec.CommandContext(ctx, bin, append(base, args...)...).Output(); err != nil {
					t.Fatalf("chromium %v: %v", args, err)
				}
			}
		}
	}
	return string(out)
}

// artifacts is where the screenshots go: $KUBEDOS_ARTIFACTS/console, or a
// directory that lives as long as the test.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if a := os.Getenv("KUBEDOS_ARTIFACTS"); a != "" {
		dir = filepath.Join(a, "console")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBrowser(t *testing.T) {
	bin := chromium(t)
	h := startHub(t)
	shots := artifacts(t)
	// A last convergence run for the plan, and an upgrade assigned at the
	// hub for the upgrades page.
	s, err := spec.LoadBytes(examples.Local)
	if err != nil {
		t.Fatal(err)
	}
	doc := h.recordRun(t, s, plan.EnrollID("w-1"))
	b2 := LoadBuild(h.builds[1], nil)
	if _, err := h.console(t, pki.RoleAdmin).c.cfg.Hub.AssignBuild(context.Background(), "w-3", b2.raw, b2.sig); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		role    pki.Role
		actions bool
	}{{pki.RoleReader, false}, {pki.RoleAdmin, true}} {
		t.Run(string(tt.role), func(t *testing.T) {
			b := h.console(t, tt.role)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go b.c.Run(ctx)
			profile := t.TempDir()
			// The login lands on the overview. The live script is not checked
			// here: --dump-dom dumps at load, before an event arrives, and
			// --virtual-time-budget waits for the event stream to end, which
			// it never does (the HTTP-level tests cover the stream).
			dom := headless(t, bin, profile, "--dump-dom", b.srv.URL+"/login?token="+b.c.Token())
			for _, want := range []string{`href="/nodes/w-1"`, `href="/nodes/w-2"`, `href="/nodes/w-3"`, `<td id="total">3</td>`} {
				if !strings.Contains(dom, want) {
					t.Errorf("overview in the browser lacks %q:\n%s", want, dom)
				}
			}
			if !strings.Contains(dom, `<script src="/static/live.js" defer="">`) {
				t.Error("the overview does not load the embedded live script")
			}
			dom = headless(t, bin, profile, "--dump-dom", b.srv.URL+"/nodes/w-2")
			// The DOM serializes text escaped: the reason is text, not a script element.
			if !strings.Contains(dom, `got &lt;script&gt;alert("pwned")&lt;/script&gt;`) || strings.Contains(dom, "<script>alert") {
				t.Errorf("quarantine reason in the browser's DOM:\n%s", dom)
			}
			if got := strings.Contains(dom, `action="/nodes/w-2/revoke"`); got != tt.actions {
				t.Errorf("%s sees a revoke form: %v, want %v", tt.role, got, tt.actions)
			}
			// The node page of an enrolled node: its PCR prediction, its
			// health, planes, drift and services from its API, and the
			// actions its role allows.
			dom = headless(t, bin, profile, "--dump-dom", b.srv.URL+"/nodes/w-3")
			for _, want := range []string{`id="pcrs"`, h.preds["b1"][4], "<td>kubelet.service</td>", `id="node-audit"`, `id="health"`, `id="planes"`, `id="drift"`} {
				if !strings.Contains(dom, want) {
					t.Errorf("node page in the browser lacks %q", want)
				}
			}
			for _, action := range []string{"replace", "upgrade", "restart"} {
				if got := strings.Contains(dom, `action="/nodes/w-3/`+action+`"`); got != tt.actions {
					t.Errorf("%s sees a %s form: %v, want %v", tt.role, action, got, tt.actions)
				}
			}
			dom = headless(t, bin, profile, "--dump-dom", b.srv.URL+"/builds")
			for _, want := range []string{"Build 2026-b1", "in service on 1 node", "signature verified with the artifact key", "MIT (1)"} {
				if !strings.Contains(dom, want) {
					t.Errorf("builds page in the browser lacks %q", want)
				}
			}
			// The plan is inline SVG the browser parsed as such: one group
			// per step, the failed step marked.
			dom = headless(t, bin, profile, "--dump-dom", b.srv.URL+"/plan")
			if n := strings.Count(dom, `<g class="step `); n != len(doc.Steps) || !strings.Contains(dom, `<g class="step o-failed"><title>enroll/w-1`) {
				t.Errorf("plan graph in the browser: %d step boxes (want %d), failed step marked: %v", n, len(doc.Steps), strings.Contains(dom, "o-failed"))
			}
			dom = headless(t, bin, profile, "--dump-dom", b.srv.URL+"/upgrades")
			if !strings.Contains(dom, `data-live-event="upgrades"`) || !strings.Contains(dom, `<td>b1</td><td>b2-worker</td>`) {
				t.Errorf("upgrades page in the browser lacks w-3's assignment:\n%s", dom)
			}
			if got := strings.Contains(dom, `action="/roll"`) && strings.Contains(dom, "Roll build 2026-b2"); got != tt.actions {
				t.Errorf("%s sees a roll of build 2026-b2: %v, want %v", tt.role, got, tt.actions)
			}
			for _, p := range []struct{ file, path string }{{"overview", "/"}, {"node", "/nodes/w-2"}, {"node-enrolled", "/nodes/w-3"},
				{"audit", "/audit"}, {"builds", "/builds"}, {"upgrades", "/upgrades"}, {"plan", "/plan"}} {
				file := filepath.Join(shots, string(tt.role)+"-"+p.file+".png")
				headless(t, bin, profile, "--screenshot="+file, b.srv.URL+p.path)
				if fi, err := os.Stat(file); err != nil || fi.Size() < 1000 {
					t.Errorf("screenshot %s: %v", file, err)
				}
			}
			t.Logf("screenshots in %s", shots)
		})
	}
}

// TestBrowserRoll: an admin's upgrades page in Chromium offers the roll
// of each build; a roll through w-3 and the quarantined w-2 shows, drawn
// by the browser, w-3 upgraded and the roll stopped at w-2.
func TestBrowserRoll(t *testing.T) {
	bin := chromium(t)
	h := startHub(t)
	shots := artifacts(t)
	b := h.rollConsole(t, pki.RoleAdmin, "w-3", "w-2")
	profile := t.TempDir()
	// The form itself is checked by TestBrowser (admin's yes, reader's no).
	headless(t, bin, profile, "--dump-dom", b.srv.URL+"/login?token="+b.c.Token())
	_, page := b.get(t, "/nodes/w-2")
	if code, body := b.post(t, "/roll", rollForm(csrfOf(t, page), "2026-b2", "2026-b2")); code != http.StatusSeeOther {
		t.Fatalf("roll = %d: %s", code, body)
	}
	waitFor(t, func() bool { _, p := b.get(t, "/upgrades"); return strings.Contains(p, `class="roll failed"`) })
	dom := headless(t, bin, profile, "--dump-dom", b.srv.URL+"/upgrades")
	for _, want := range []string{`<li class="step-upgraded">w-3: upgraded</li>`, `<li class="step-failed">w-2: failed</li>`, "stopped at w-2"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the roll in the browser lacks %q:\n%s", want, dom)
		}
	}
	file := filepath.Join(shots, "admin-roll.png")
	headless(t, bin, profile, "--screenshot="+file, b.srv.URL+"/upgrades")
	if fi, err := os.Stat(file); err != nil || fi.Size() < 1000 {
		t.Errorf("screenshot %s: %v", file, err)
	}
}

// TestBrowserAtHub drives Chromium against the console the hub serves on
// the master (ServeAtHub beside the hub's gRPC API, as kubedosd runs
// them): each operator logs in by the one-time link the hub minted for
// their certificate; a reader sees the nodes and no action, and a forged
// revoke is refused; an admin's revoke shows on the audit page under the
// admin's name.
func TestBrowserAtHub(t *testing.T) {
	bin := chromium(t)
	mh := startMasterHub(t)
	shots := artifacts(t)

	rita := mh.cert(t, "rita", pki.RoleReader)
	readerProfile := t.TempDir()
	dom := headless(t, bin, readerProfile, "--dump-dom", mh.login(t, rita, ""))
	for _, want := range []string{`href="/nodes/w-1"`, `href="/nodes/w-2"`, `<td id="total">2</td>`, "<b>rita</b> (reader)"} {
		if !strings.Contains(dom, want) {
			t.Errorf("reader's overview in the browser lacks %q:\n%s", want, dom)
		}
	}
	dom = headless(t, bin, readerProfile, "--dump-dom", mh.url+"/nodes/w-1")
	if strings.Contains(dom, `action="/nodes/w-1/revoke"`) || !strings.Contains(dom, `id="node-api-note"`) {
		t.Errorf("reader's node page in the browser: a revoke form, or no note on the node API:\n%s", dom)
	}
	headless(t, bin, readerProfile, "--screenshot="+filepath.Join(shots, "athub-reader-node.png"), mh.url+"/nodes/w-1")
	// A forged revoke in a reader's session (the form is not there to
	// take a token from) is refused and changes nothing.
	reader := mh.browser(t, rita)
	if code, msg := reader.act(t, "w-1", "revoke"); code != http.StatusForbidden {
		t.Errorf("reader's forged revoke: %d %s, want 403", code, msg)
	}

	alice := mh.cert(t, "alice", pki.RoleAdmin)
	adminProfile := t.TempDir()
	dom = headless(t, bin, adminProfile, "--dump-dom", mh.login(t, alice, ""))
	if !strings.Contains(dom, "<b>alice</b> (admin)") {
		t.Errorf("admin's overview in the browser:\n%s", dom)
	}
	dom = headless(t, bin, adminProfile, "--dump-dom", mh.url+"/nodes/w-1")
	if !strings.Contains(dom, `action="/nodes/w-1/revoke"`) {
		t.Errorf("admin's node page in the browser lacks the revoke form:\n%s", dom)
	}
	if code, msg := mh.browser(t, alice).act(t, "w-1", "revoke"); code != http.StatusSeeOther {
		t.Fatalf("admin's revoke: %d %s", code, msg)
	}
	dom = headless(t, bin, adminProfile, "--dump-dom", mh.url+"/audit")
	if !strings.Contains(dom, "<td>alice (admin)</td><td>node.revoke</td>") {
		t.Errorf("the audit page in the browser lacks the admin's revoke:\n%s", dom)
	}
	// No roll here (no build's images, no key for the nodes): the page
	// says why and where to roll from.
	dom = headless(t, bin, adminProfile, "--dump-dom", mh.url+"/upgrades")
	if strings.Contains(dom, `action="/roll"`) || !strings.Contains(dom, `id="roll-note"`) {
		t.Errorf("the admin's upgrades page at the hub in the browser: a roll form, or no note why not:\n%s", dom)
	}
	for _, p := range []struct{ file, path string }{{"athub-admin-overview", "/"}, {"athub-admin-audit", "/audit"}, {"athub-admin-node", "/nodes/w-1"},
		{"athub-admin-upgrades", "/upgrades"}} {
		file := filepath.Join(shots, p.file+".png")
		headless(t, bin, adminProfile, "--screenshot="+file, mh.url+p.path)
		if fi, err := os.Stat(file); err != nil || fi.Size() < 1000 {
			t.Errorf("screenshot %s: %v", file, err)
		}
	}
	t.Logf("screenshots in %s", shots)
}
