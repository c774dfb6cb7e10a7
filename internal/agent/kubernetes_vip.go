package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/kubeplan"
)

// apiNotReadyAfter is how many checks in a row (one every kubeEvery) must
// fail before a ready API server is reported not ready to keepalived: one
// slow /readyz under load must not move the VIP (each move cuts the API's
// open connections), and keepalived sees a dead API server's process exit
// at once anyway. One success reports it ready.
const apiNotReadyAfter = 3

// trackAPIReady keeps kubeplan.APINotReadyFile from the local API
// server's /readyz where this control plane holds the VIP itself, so
// that keepalived prefers a ready control plane to one whose API server
// runs but cannot answer yet (docs/kubernetes.md, "High availability and
// its drills"). It writes only on a change: keepalived
// reads the file on every inotify event.
func (k *kubeRunner) trackAPIReady(ctx context.Context, p *kubeplan.Plan) error {
	if p.LB == nil || p.LB.Track != kubeplan.APIServer {
		return nil
	}
	ready := k.localAPIReady
	if ready == nil {
		ready = func(ctx context.Context, p *kubeplan.Plan) error {
			port := kubeplan.APIServerPort
			if k.apiPort != 0 {
				port = k.apiPort
			}
			return k.APIReady(ctx, "https://"+net.JoinHostPort(p.LB.Address, strconv.Itoa(port)), p.Node)
		}
	}
	err := ready(ctx, p)
	// The file itself says what keepalived was told last ("" when none).
	f := k.path(kubeplan.APINotReadyFile)
	old, _ := os.ReadFile(f)
	k.mu.Lock()
	if err == nil {
		k.apiFails = 0
	} else {
		k.apiFails++
	}
	notReady := err != nil && (string(old) != "0\n" || k.apiFails >= apiNotReadyAfter)
	k.mu.Unlock()
	want := "0\n"
	if notReady {
		want = "1\n"
	}
	if string(old) == want {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
		return err
	}
	if err := durable.WriteFile(f, []byte(want), 0o644); err != nil {
		return err
	}
	if notReady {
		k.logf("kubernetes: the local API server is not ready (%v): keepalived yields the VIP to a ready control plane", err)
	} else {
		k.logf("kubernetes: the local API server is ready: keepalived may take the VIP from a not-ready holder")
	}
	return nil
}
