//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
)

// promDetail is what the prometheus node's health says of Prometheus (the
// prometheus controller's line: Prometheus's own targets and alerts).
func promDetail(t *testing.T, dir, apiAddr, name string) string {
	t.Helper()
	var h api.Health
	r := run(t, dir, nil, "node", "health", "--node", apiAddr, "--name", name, "--keys", "keys", "-o", "json")
	if json.Unmarshal([]byte(r.stdout), &h) != nil {
		return ""
	}
	for _, c := range h.Checks {
		if c.Name == "controller prometheus" {
			return c.Detail
		}
	}
	return ""
}

// waitProm polls the prometheus node's health until ok holds of its
// Prometheus line; it returns the last line and how long it took.
func waitProm(t *testing.T, dir, apiAddr, name string, timeout time.Duration, ok func(string) bool) (string, time.Duration, bool) {
	t.Helper()
	start, last := time.Now(), ""
	for time.Since(start) < timeout {
		if last = promDetail(t, dir, apiAddr, name); ok(last) {
			return last, time.Since(start), true
		}
		time.Sleep(5 * time.Second)
	}
	return last, time.Since(start), false
}

var targetsUp = regexp.MustCompile(`targets up (\d+)/(\d+)`)

// allUp: every active target answers, and there are at least n.
func allUp(n int) func(string) bool {
	return func(d string) bool {
		m := targetsUp.FindStringSubmatch(d)
		if m == nil || m[1] != m[2] {
			return false
		}
		var got int
		for _, c := range m[1] {
			got = got*10 + int(c-'0')
		}
		return got >= n
	}
}

// checkPrometheus: the prometheus node, converged by kubedosd from the
// hub's configuration, scrapes every enrolled node's kubedosd and the hub
// over wg-observability with its hub-issued reader certificate (each
// node's name checked), and itself: all up. Neither Prometheus nor the
// hub's metrics answer on the LAN.
func checkPrometheus(t *testing.T, dir, monAPI, mon string, nodes int, lanHosts ...string) {
	t.Helper()
	// kubedosd of every node, the hub, Prometheus itself.
	want := nodes + 2
	d, took, ok := waitProm(t, dir, monAPI, mon, 4*time.Minute, allUp(want))
	if !ok {
		t.Errorf("Prometheus on %s never had its %d targets up: %q", mon, want, d)
		return
	}
	t.Logf("FIGURE Prometheus on %s: every target up %.0fs after the cluster was up (%s)", mon, took.Seconds(), d)
	for _, hp := range lanHosts {
		c, err := net.DialTimeout("tcp", hp, 3*time.Second)
		var ne net.Error
		switch {
		case err == nil:
			c.Close()
			t.Errorf("%s answers on the LAN: only wg-observability may reach it", hp)
		case errors.As(err, &ne) && ne.Timeout(), strings.Contains(err.Error(), "refused"):
		default:
			t.Errorf("%s on the LAN: %v", hp, err)
		}
	}
}

// checkRevokedAlert: once node is fenced, Prometheus stops scraping it (no
// target down) and fires KubedosNodeRevokedOrFenced for it.
func checkRevokedAlert(t *testing.T, dir, monAPI, mon, node string) {
	t.Helper()
	d, took, ok := waitProm(t, dir, monAPI, mon, 4*time.Minute, func(d string) bool {
		m := targetsUp.FindStringSubmatch(d)
		return m != nil && m[1] == m[2] && strings.Contains(d, "KubedosNodeRevokedOrFenced{node="+node+"}")
	})
	if !ok {
		t.Errorf("no KubedosNodeRevokedOrFenced for %s with %s out of the targets: %q", node, node, d)
		return
	}
	t.Logf("FIGURE fence of %s to its alert firing: %.0fs (%s)", node, took.Seconds(), d)
}
