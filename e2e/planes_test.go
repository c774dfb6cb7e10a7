//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
)

// readPlanes asks a node for its planes; nil when it does not answer.
func readPlanes(t *testing.T, dir, apiAddr, name string) *api.Planes {
	t.Helper()
	r := run(t, dir, nil, "node", "planes", "--node", apiAddr, "--name", name, "--keys", "keys", "-o", "json")
	var p api.Planes
	if json.Unmarshal([]byte(r.stdout), &p) != nil {
		return nil
	}
	return &p
}

// shook lists, per interface, the peers that completed a handshake and
// have sent something.
func shook(p *api.Planes) map[string][]string {
	out := map[string][]string{}
	for _, st := range p.Interfaces {
		out[st.Interface] = []string{}
		for _, pe := range st.Peers {
			if !pe.LatestHandshake.IsZero() && pe.RxBytes > 0 {
				out[st.Interface] = append(out[st.Interface], pe.Name)
			}
		}
		slices.Sort(out[st.Interface])
	}
	return out
}

// waitPlanes polls a node until every one of its three planes has a
// handshake with exactly want (sorted), or timeout.
func waitPlanes(t *testing.T, dir, apiAddr, name string, want []string, timeout time.Duration) (*api.Planes, bool) {
	t.Helper()
	var last *api.Planes
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Second) {
		p := readPlanes(t, dir, apiAddr, name)
		if p == nil {
			continue
		}
		last = p
		got := shook(p)
		ok := len(got) == 3
		for _, peers := range got {
			ok = ok && slices.Equal(peers, want)
		}
		if ok {
			return p, true
		}
	}
	return last, false
}

// peerNames lists every peer of every interface, handshake or not.
func peerNames(p *api.Planes) []string {
	var out []string
	for _, st := range p.Interfaces {
		for _, pe := range st.Peers {
			out = append(out, st.Interface+":"+pe.Name)
		}
	}
	return out
}

// checkPlanes: the three WireGuard planes come up from first boot — the
// master (the hub of each) completes a handshake with both workers on all
// three, and a worker with the master — through the guest kernels'
// WireGuard over the cluster's LAN.
func checkPlanes(t *testing.T, dir string, master, worker [2]string) {
	t.Helper()
	start := time.Now()
	p, ok := waitPlanes(t, dir, master[0], master[1], []string{"mon", "w-1", "w-2"}, 3*time.Minute)
	if !ok {
		b, _ := json.MarshalIndent(p, "", "  ")
		t.Errorf("the master's planes never shook hands with both workers:\n%s", b)
		return
	}
	t.Logf("FIGURE planes: every handshake done %.0fs after the cluster was up", time.Since(start).Seconds())
	for _, st := range p.Interfaces {
		if !st.Up || len(st.Addresses) != 1 || !strings.HasSuffix(st.Addresses[0], ".10/24") {
			t.Errorf("master %s: up=%v addresses %v", st.Interface, st.Up, st.Addresses)
		}
	}
	if _, ok := waitPlanes(t, dir, worker[0], worker[1], []string{"master"}, time.Minute); !ok {
		t.Errorf("%s never shook hands with the master on all three planes", worker[1])
	}
	out := must(t, dir, "node", "planes", "--node", master[0], "--name", master[1], "--keys", "keys")
	t.Logf("master's planes:\n%s", out)
}

// checkFencedOffPlanes: a fenced node drops off the master's planes.
func checkFencedOffPlanes(t *testing.T, dir string, master [2]string, fenced string) {
	t.Helper()
	var last []string
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Second) {
		p := readPlanes(t, dir, master[0], master[1])
		if p == nil {
			continue
		}
		last = peerNames(p)
		if len(p.Interfaces) == 3 && !slices.ContainsFunc(last, func(s string) bool { return strings.HasSuffix(s, ":"+fenced) }) {
			return
		}
	}
	t.Errorf("fenced %s is still a peer on the master's planes: %v", fenced, last)
}

// checkFirewall: a node's baseline drops what it does not serve — a port
// nothing listens on gets no answer at all (without the baseline the
// node's kernel would refuse it at once) — while its node API answers.
func checkFirewall(t *testing.T, apiAddr string) {
	t.Helper()
	host, _, err := net.SplitHostPort(apiAddr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, "22"), 3*time.Second)
	var ne net.Error
	switch {
	case err == nil:
		c.Close()
		t.Errorf("%s:22 accepted a connection", host)
	case !errors.As(err, &ne) || !ne.Timeout():
		t.Errorf("%s:22 answered (%v): the baseline firewall should drop it", host, err)
	}
	c, err = net.DialTimeout("tcp", apiAddr, 10*time.Second)
	if err != nil {
		t.Errorf("node API %s behind the firewall: %v", apiAddr, err)
		return
	}
	c.Close()
}
