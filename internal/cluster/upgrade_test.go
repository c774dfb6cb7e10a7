package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/api/apitest"
	"github.com/kubedos/kubedos/internal/spec"
)

func TestRollUpgrade(t *testing.T) {
	nodes := []string{"master", "w-1", "w-2"}
	for _, tc := range []struct {
		name      string
		fail      string // the node whose upgrade fails
		noOutcome bool   // it fails before an outcome (refused payload, unreachable)
		tried     []string
		reported  []string
		err       string
	}{
		{name: "all upgrade", tried: nodes, reported: nodes},
		{name: "second rolls back", fail: "w-1", tried: []string{"master", "w-1"}, reported: []string{"master", "w-1"}, err: "stopped at w-1"},
		{name: "first refused", fail: "master", noOutcome: true, tried: []string{"master"}, err: "stopped at master"},
		{name: "last unreachable", fail: "w-2", noOutcome: true, tried: nodes, reported: []string{"master", "w-1"}, err: "stopped at w-2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tried, reported []string
			outs, err := Roll(context.Background(), nodes, func(_ context.Context, name string) (*Outcome, error) {
				tried = append(tried, name)
				if name != tc.fail {
					return &Outcome{Node: name, Result: "upgraded"}, nil
				}
				if tc.noOutcome {
					return nil, errors.New("refused")
				}
				return &Outcome{Node: name, Result: "rolled-back"}, ErrRolledBack
			}, func(o *Outcome) { reported = append(reported, o.Node) })
			if !slices.Equal(tried, tc.tried) {
				t.Errorf("tried %v, want %v", tried, tc.tried)
			}
			if !slices.Equal(reported, tc.reported) || len(outs) != len(tc.reported) {
				t.Errorf("reported %v (%d outcomes), want %v", reported, len(outs), tc.reported)
			}
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Roll(ctx, nodes, func(context.Context, string) (*Outcome, error) {
		t.Error("upgraded a node after the roll was cancelled")
		return nil, nil
	}, func(*Outcome) {}); err == nil {
		t.Error("a cancelled roll reported success")
	}
}

func TestRunsSettled(t *testing.T) {
	good := &api.BootState{Entry: "kubedos-b.conf"}
	for _, tc := range []struct {
		name string
		v    *api.NodeVersion
		want bool
	}{
		{"settled on it", &api.NodeVersion{BuildID: "b2", Boot: good}, true},
		{"another build", &api.NodeVersion{BuildID: "b1", Boot: good}, false},
		{"on trial", &api.NodeVersion{BuildID: "b2", Boot: &api.BootState{Trial: true}}, false},
		{"boot state unreadable", &api.NodeVersion{BuildID: "b2", Boot: &api.BootState{Error: "no ESP"}}, false},
		{"no boot state", &api.NodeVersion{BuildID: "b2"}, false},
	} {
		if got := RunsSettled(tc.v, "b2"); got != tc.want {
			t.Errorf("%s: runsSettled = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestQuorumGate: a member goes down only when every other member is
// healthy, and the roll waits for it to be healthy again; a member that
// never comes back stops the roll, naming it; other nodes pass through.
func TestQuorumGate(t *testing.T) {
	members := []string{"cp-1", "cp-2", "cp-3"}
	for _, tc := range []struct {
		name     string
		healthy  func(node string, polls int, upgraded bool) bool
		upgrade  string
		upgraded bool
		err      string
	}{
		{"all healthy", func(string, int, bool) bool { return true }, "cp-2", true, ""},
		{"a peer rejoins after two polls", func(n string, polls int, _ bool) bool { return n != "cp-3" || polls > 2 }, "cp-1", true, ""},
		{"a peer never healthy", func(n string, _ int, _ bool) bool { return n != "cp-3" }, "cp-1", false, "before taking cp-1 down: not every member healthy"},
		{"the member rejoins after a while", func(n string, polls int, _ bool) bool { return polls > 3 }, "cp-2", true, ""},
		{"the member never comes back", func(n string, _ int, up bool) bool { return n != "cp-2" || !up }, "cp-2", true, "after cp-2's upgrade"},
		{"not a member", func(string, int, bool) bool { return false }, "w-1", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			polls := map[string]int{}
			var asked []string
			upgraded := false
			g := QuorumGate{Members: members, Wait: 200 * time.Millisecond, Every: 10 * time.Millisecond,
				Health: func(_ context.Context, n string) (bool, string) {
					polls[n]++
					asked = append(asked, n)
					if tc.healthy(n, polls[n], upgraded) {
						return true, "has a leader"
					}
					return false, "RAFT NO LEADER"
				}}
			_, err := g.Wrap(func(_ context.Context, n string) (*Outcome, error) {
				if slices.Contains(asked, n) {
					t.Errorf("asked %s's own health before its turn: %v", n, asked)
				}
				upgraded = true
				return &Outcome{Node: n, Result: "upgraded"}, nil
			})(context.Background(), tc.upgrade)
			if upgraded != tc.upgraded {
				t.Errorf("upgraded %v, want %v (asked %v)", upgraded, tc.upgraded, asked)
			}
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
			if tc.upgrade == "w-1" && len(asked) != 0 {
				t.Errorf("a worker's turn asked etcd: %v", asked)
			}
		})
	}
}

// A roll goes in the spec's order, not by name: whoever wrote the spec
// put the nodes in the order they may go down in.
func TestRollOrder(t *testing.T) {
	s := &spec.ClusterSpec{Topology: spec.Topology{Nodes: []spec.Node{{Name: "w-2"}, {Name: "master"}, {Name: "w-1"}}}}
	if got, want := RollOrder(s), []string{"w-2", "master", "w-1"}; !slices.Equal(got, want) {
		t.Errorf("RollOrder = %v, want %v", got, want)
	}
}

// A poll the gate's deadline cuts short says only "deadline exceeded":
// the gate's error names why the members were not healthy at the poll
// before it.
func TestQuorumGateReportsLastWholePoll(t *testing.T) {
	calls := 0
	g := QuorumGate{Members: []string{"cp-1"}, Wait: 300 * time.Millisecond, Every: 10 * time.Millisecond,
		Health: func(ctx context.Context, name string) (bool, string) {
			calls++
			if calls < 3 {
				return false, "member cp-1: no leader"
			}
			<-ctx.Done()
			return false, "unreachable: " + ctx.Err().Error()
		}}
	err := g.wait(context.Background(), []string{"cp-1"}, "after the restore")
	if err == nil || !strings.Contains(err.Error(), "cp-1: member cp-1: no leader") {
		t.Errorf("error %v, want the last whole poll's answer", err)
	}
}

// kubeletNode answers Health with a "kubelet" check that is OK from the
// readyAt-th call on (never when 0), or no such check (absent).
type kubeletNode struct {
	api.NodeServer
	mu      sync.Mutex
	calls   int
	readyAt int
	absent  bool
	// pods, when set, answers a request for pods at each call.
	pods      func(call int) []api.PodReadiness
	askedPods int
}

func (n *kubeletNode) Health(_ context.Context, req *api.HealthRequest) (*api.Health, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls++
	h := &api.Health{Healthy: true, Checks: []api.HealthCheck{{Name: "enrolled", OK: true, Critical: true}}}
	if !n.absent {
		ok := n.readyAt > 0 && n.calls >= n.readyAt
		h.Checks = append(h.Checks, api.HealthCheck{Name: "kubelet", OK: ok, Detail: "the node's Kubernetes Node is registered, not Ready"})
	}
	if req.Pods {
		n.askedPods++
		if n.pods != nil {
			h.Pods = n.pods(n.calls)
		}
	}
	return h, nil
}

// After a kubelet node settles on its new build the roll waits for its
// Node to be Ready again and, with its pods from before, for them; a node
// without a kubelet is not waited for; one never back within the wait
// stops the roll, saying what it waited for.
func TestWaitKubeletReady(t *testing.T) {
	pod := func(name string, ready bool) api.PodReadiness { return api.PodReadiness{Name: name, Ready: ready} }
	before := []api.PodReadiness{pod("kube-system/coredns-1", true), pod("default/broken", false)}
	// Its pods start again after the reboot: the coredns pod Ready from
	// the fourth ask, a new probe pod (an evicted one made again) from
	// the fifth; the broken one never.
	restarting := func(call int) []api.PodReadiness {
		return []api.PodReadiness{pod("kube-system/coredns-1", call >= 4), pod("default/broken", false), pod("kubedos-probe/probe-2", call >= 5)}
	}
	for _, tc := range []struct {
		name     string
		node     *kubeletNode
		before   []api.PodReadiness
		err      string
		minCalls int
	}{
		{"ready at the third ask", &kubeletNode{readyAt: 3}, nil, "", 3},
		{"no kubelet", &kubeletNode{absent: true}, nil, "", 1},
		{"never ready", &kubeletNode{}, nil, "kubelet: the node's Kubernetes Node is registered, not Ready", 2},
		{"ready, then its pods", &kubeletNode{readyAt: 2, pods: restarting}, before, "", 5},
		{"pods never back", &kubeletNode{readyAt: 1, pods: func(int) []api.PodReadiness {
			return []api.PodReadiness{pod("kube-system/coredns-1", false), pod("default/broken", false)}
		}}, before, "1 pod(s) not Ready again: kube-system/coredns-1", 2},
		{"no pods asked without a list from before", &kubeletNode{readyAt: 1, pods: restarting}, nil, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := apitest.NewNode(t, "w-1", "worker", tc.node)
			addr := env.Serve(t)
			tg := UpgradeTarget{Name: "w-1", DialNode: func() (*api.NodeClient, func(), error) { return Access{Keys: env.Keys}.Node(addr, "w-1") }}
			err := waitKubeletReady(context.Background(), tg, UpgradeOptions{Wait: 2 * time.Second, SettleEvery: 50 * time.Millisecond}, tc.before)
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
			if tc.node.calls < tc.minCalls || (tc.err == "" && tc.node.calls != tc.minCalls) {
				t.Errorf("asked %d times, want %d", tc.node.calls, tc.minCalls)
			}
			if (tc.before == nil) != (tc.node.askedPods == 0) {
				t.Errorf("pods asked %d times with a list from before %v", tc.node.askedPods, tc.before)
			}
		})
	}
}
