package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/kube"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/kubedos/kubedos/internal/steps"
)

// The replacement drill's steps, in order (seed 004 §17).
const (
	DrillFence    = "fence"
	DrillReplace  = "replace"
	DrillDestroy  = "destroy"
	DrillRecreate = "recreate"
	DrillEnroll   = "enroll"
	DrillKubelet  = "kubelet ready"
	DrillEtcd     = "etcd member healthy" // control-plane and etcd nodes
	DrillAPI      = "API server serving"  // control-plane nodes
	DrillProbe    = "probe available"     // and CoreDNS
)

// DrillReport is what the replacement drill did to a node, step by step.
type DrillReport struct {
	Node string `json:"node"`
	// OldEK and NewEK are the EK hashes of the machine fenced and of the
	// one that enrolled in its place: a fresh TPM, so they differ.
	OldEK    string        `json:"oldEKHash,omitempty"`
	NewEK    string        `json:"newEKHash,omitempty"`
	Steps    []DrillStep   `json:"steps"`
	WallTime time.Duration `json:"wallTimeNS"`
}

// DrillStep is one step and how long it took.
type DrillStep struct {
	Step   string        `json:"step"`
	OK     bool          `json:"ok"`
	Took   time.Duration `json:"tookNS"`
	Detail string        `json:"detail,omitempty"`
}

// Summary is the report in one line: each step with its time, the first
// failure with why.
func (r *DrillReport) Summary() string {
	var parts []string
	for _, s := range r.Steps {
		if !s.OK {
			parts = append(parts, fmt.Sprintf("%s FAILED after %s: %s", s.Step, s.Took.Round(time.Second), s.Detail))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %s", s.Step, s.Took.Round(100*time.Millisecond)))
	}
	out := r.Node + ": " + strings.Join(parts, ", ")
	if r.NewEK != "" {
		out += fmt.Sprintf("; EK %s… replaced by %s…", short(r.OldEK), short(r.NewEK))
	}
	return out + fmt.Sprintf("; %s in all", r.WallTime.Round(time.Second))
}

func short(ek string) string { return ek[:min(12, len(ek))] }

// drillOps is what the drill drives: the hub, the target and the API
// server, each step one call. Cluster.Drill gives the real ones; tests
// give fakes.
type drillOps struct {
	// fence has the hub fence the node, stops its machine and takes it
	// out of Kubernetes (ActOnNode); replace retires its EK at the hub.
	fence, replace func(ctx context.Context) (string, error)
	// destroy removes the machine with its disk and TPM; recreate makes a
	// new one (a fresh TPM, its EK registered at the hub) and starts it.
	destroy, recreate func(ctx context.Context) error
	// enrolled waits until the hub enrolls the node and gives its EK.
	enrolled func(ctx context.Context) (string, error)
	// etcd asks the node (its own API) whether its etcd member is
	// healthy; nil when the node runs no etcd.
	etcd func(ctx context.Context) (bool, string, error)
	// apiAddress is the node's kubernetes-plane address, which its API
	// server advertises ("" when it runs none); noKubelet says it runs
	// no kubelet (a control-plane or etcd node).
	apiAddress string
	noKubelet  bool
	// kube is the API server (nil when the spec runs no Kubernetes).
	kube interface {
		Nodes(ctx context.Context) ([]kube.Node, error)
		Get(ctx context.Context, path string, out any) error
	}
	// poll is how often the Kubernetes waits ask.
	poll time.Duration
	// resumed are the steps an interrupted run of the drill finished
	// (skipped now); progress, when set, is told each step finished.
	resumed  []string
	progress func(done []string) error
}

// DrillNodeOK says whether the drill may replace node: a worker that runs
// a kubelet when the spec runs Kubernetes, or a control-plane or etcd node
// whose loss the cluster survives — three or more etcd members (a quorum
// without it), and for an API server another one behind the API VIP (the
// drill and the cluster keep an API to talk to). Never the master: it
// keeps the hub.
func DrillNodeOK(s *spec.ClusterSpec, node string) error {
	n, ok := s.NodeByName(node)
	if !ok {
		return invalid("--drill %s: no node %s in the spec", node, node)
	}
	comps := kubeplan.ComponentsFor(s, n.Role)
	switch {
	case n.Role == spec.RoleWorker:
		if s.Workloads.Kubernetes.Enabled && !slices.Contains(comps, kubeplan.Kubelet) {
			return invalid("--drill %s: it runs no kubelet", node)
		}
		return nil
	case (n.Role == spec.RoleControlPlane || n.Role == spec.RoleEtcd) && s.Workloads.Kubernetes.Enabled:
		if m := len(kubeplan.EtcdNodes(s)); slices.Contains(comps, kubeplan.Etcd) && m < 3 {
			return invalid("--drill %s: it is one of %d etcd member(s); without it there is no quorum (three or more needed)", node, m)
		}
		if slices.Contains(comps, kubeplan.APIServer) && (s.CountRole(spec.RoleControlPlane) < 2 || s.APIVIPHolders() == "") {
			return invalid("--drill %s: the API would go with it: needs another control-plane node and topology.apiVIP", node)
		}
		return nil
	}
	return invalid("--drill %s: it is a %s node; the drill replaces a worker, or a control-plane or etcd node of an HA cluster (a master keeps the hub)", node, n.Role)
}

// Drill runs the replacement drill on a worker (seed 004 §17): fence it
// (the hub revokes it, its VM stops, it is cordoned, drained and its Node
// deleted), retire its identity (replace), destroy its VM with disk and
// TPM, recreate it from the same build with a fresh TPM whose EK is
// registered first, wait until it enrolls through the gate, and, with
// Kubernetes, until its kubelet is Ready and the probe Deployment is
// available again. It is destructive by design: only a node the operator
// names, and only a worker (DrillNodeOK). Each step's time is reported;
// the error names the step that failed. Its progress is kept in the
// cluster's state directory after each step (drills/NODE.json), so the next
// drill of the node resumes where a failed or cut-off one stopped, with the
// EK of the machine it fenced. Local (qemu) target only.
//
// kc is an API server client the caller holds (the acceptance gate's);
// nil: the drill asks the hub for an admin credential of its own. Either
// way the drill and its fence share the one (each is an audited issuance).
func (c *Cluster) Drill(ctx context.Context, node string, kc *kube.Client) (*DrillReport, error) {
	if err := DrillNodeOK(c.Spec, node); err != nil {
		return nil, err
	}
	if c.targetName() != spec.TargetQEMU {
		return nil, invalid("the replacement drill runs on the qemu target; %s is not supported yet", c.targetName())
	}
	if c.Manifest == nil || c.Keys == nil {
		return nil, invalid("the replacement drill needs the build (--build) and the key directory: it recreates the node's VM")
	}
	n, _ := c.Spec.NodeByName(node)
	if c.hubAddr == "" {
		addr, _, where, err := c.FindHub()
		if err != nil {
			return nil, err
		}
		if addr == "" {
			return nil, fmt.Errorf("no hub for the drill: %s name none", where)
		}
	}
	t, err := c.startTarget()
	if err != nil {
		return nil, err
	}
	hubConn, err := c.access().Conn(c.hubAddr, api.HubServerName)
	if err != nil {
		return nil, err
	}
	defer hubConn.Close()
	admin := api.NewAdminClient(hubConn)
	if kc == nil && c.Spec.Workloads.Kubernetes.Enabled {
		if kc, err = adminKube(ctx, hubConn); err != nil {
			return nil, err
		}
	}
	act := func(verb NodeVerb, withSpec bool) func(ctx context.Context) (string, error) {
		return func(ctx context.Context) (string, error) {
			a := NodeAction{Verb: verb, Name: node, Reason: "acceptance: replacement drill", Kube: kc}
			if withSpec {
				a.Spec, a.Stop = c.Spec, c.StopNode
			}
			out, err := actOnNode(ctx, hubConn, a, time.Now)
			if err != nil {
				return "", err
			}
			var what []string
			if out.Node != nil {
				what = append(what, "hub: "+string(out.Node.State))
			}
			if out.VM != nil {
				what = append(what, "VM "+string(out.VM.Action))
			}
			if k := out.Kubernetes; k != nil {
				if k.Unreachable != "" {
					return "", fmt.Errorf("taking it out of Kubernetes: unreachable: %s", k.Unreachable)
				}
				for _, s := range k.Steps {
					if !s.OK {
						return "", fmt.Errorf("taking it out of Kubernetes: %s: %s", s.Step, s.Detail)
					}
					what = append(what, s.Step)
				}
			}
			return strings.Join(what, ", "), nil
		}
	}
	ops := drillOps{
		fence:   act(NodeFence, true),
		replace: act(NodeReplace, false),
		destroy: func(ctx context.Context) error { return t.Destroy(ctx, node) },
		recreate: func(ctx context.Context) error {
			return c.startNodes(ctx, t, []spec.Node{n}, func(spec.Node) string { return c.hubAddr }, true)
		},
		enrolled: func(ctx context.Context) (string, error) {
			if _, err := c.waitNodes(ctx, []spec.Node{n}, c.drillTimeout()); err != nil {
				return "", err
			}
			got, err := admin.GetNode(ctx, node)
			if err != nil {
				return "", err
			}
			return got.EKHash, nil
		},
		poll: 3 * time.Second,
	}
	if kc != nil {
		ops.kube = kc
	}
	if c.Spec.Workloads.Kubernetes.Enabled {
		comps := kubeplan.ComponentsFor(c.Spec, n.Role)
		ops.noKubelet = !slices.Contains(comps, kubeplan.Kubelet)
		if slices.Contains(comps, kubeplan.APIServer) {
			a, err := c.Spec.PlaneAddress(n, spec.PlaneKubernetes)
			if err != nil {
				return nil, err
			}
			ops.apiAddress = a.String()
		}
		if slices.Contains(comps, kubeplan.Etcd) {
			ops.etcd = func(ctx context.Context) (bool, string, error) {
				return askNodeEtcd(ctx, NodeDialer{Addr: c.NodeAPIAddr(node), Name: node, Access: c.access()}.Dial)
			}
		}
	}
	rec := c.drillRecord(node)
	prog, resumed, err := rec.load(node)
	if err != nil {
		return nil, err
	}
	if !resumed {
		old, err := admin.GetNode(ctx, node)
		if err != nil {
			return nil, fmt.Errorf("the hub's record of %s: %w", node, err)
		}
		prog = drillProgress{Node: node, OldEK: old.EKHash, Started: time.Now().UTC()}
	} else {
		c.ev.emit(StepDone{Node: node, Text: fmt.Sprintf("drill: resuming the drill started %s after %s (%s)",
			prog.Started.Format(time.RFC3339), strings.Join(prog.Done, ", "), rec.path)})
	}
	ops.resumed = prog.Done
	ops.progress = func(done []string) error {
		p := prog
		p.Done = done
		return rec.save(p)
	}
	r := ops.run(ctx, node, prog.OldEK, c.drillTimeout(), func(s DrillStep) {
		c.ev.emit(StepDone{Node: node, Text: fmt.Sprintf("drill: %s (%s) %s", s.Step, s.Took.Round(100*time.Millisecond), s.Detail)})
	})
	if last := r.Steps[len(r.Steps)-1]; !last.OK {
		return r, fmt.Errorf("replacement drill of %s: %s: %s (the next --drill %s resumes from there)", node, last.Step, last.Detail, node)
	}
	return r, rec.clear()
}

func (c *Cluster) drillTimeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 15 * time.Minute
}

// run takes the steps in order and stops at the first that fails; each
// wait is bounded by timeout.
func (o drillOps) run(ctx context.Context, node, oldEK string, timeout time.Duration, emit func(DrillStep)) *DrillReport {
	r := &DrillReport{Node: node, OldEK: oldEK, Steps: []DrillStep{}}
	start := time.Now()
	done := slices.Clone(o.resumed)
	step := func(name string, fn func(ctx context.Context) (string, error)) bool {
		if slices.Contains(o.resumed, name) {
			s := DrillStep{Step: name, OK: true, Detail: "done by the interrupted run (resumed)"}
			r.Steps = append(r.Steps, s)
			if emit != nil {
				emit(s)
			}
			return true
		}
		t0 := time.Now()
		cctx, cancel := context.WithTimeout(ctx, timeout)
		detail, err := fn(cctx)
		cancel()
		s := DrillStep{Step: name, OK: err == nil, Took: time.Since(t0), Detail: detail}
		if err != nil {
			s.Detail = err.Error()
		}
		if s.OK && o.progress != nil {
			done = append(done, name)
			if perr := o.progress(done); perr != nil {
				s.OK, s.Detail = false, fmt.Sprintf("%s; but its progress was not kept: %v", s.Detail, perr)
			}
		}
		r.Steps = append(r.Steps, s)
		if emit != nil {
			emit(s)
		}
		return s.OK
	}
	plain := func(fn func(ctx context.Context) error, detail string) func(ctx context.Context) (string, error) {
		return func(ctx context.Context) (string, error) { return detail, fn(ctx) }
	}
	ok := step(DrillFence, o.fence) &&
		step(DrillReplace, o.replace) &&
		step(DrillDestroy, plain(o.destroy, "VM, disk and TPM state removed")) &&
		step(DrillRecreate, plain(o.recreate, "from the same build, a fresh TPM, its EK registered first")) &&
		step(DrillEnroll, func(ctx context.Context) (string, error) {
			ek, err := o.enrolled(ctx)
			if err != nil {
				return "", err
			}
			r.NewEK = ek
			if ek == "" || ek == oldEK {
				return "", fmt.Errorf("enrolled with EK %q, the fenced machine's was %q: not a fresh TPM", short(ek), short(oldEK))
			}
			return "through the gate, EK " + short(ek) + "…", nil
		})
	if ok && o.etcd != nil {
		ok = step(DrillEtcd, func(ctx context.Context) (string, error) { return o.until(ctx, o.etcd) })
	}
	if ok && o.kube != nil && o.apiAddress != "" {
		ok = step(DrillAPI, func(ctx context.Context) (string, error) { return o.apiServing(ctx) })
	}
	if ok && o.kube != nil && !o.noKubelet {
		ok = step(DrillKubelet, func(ctx context.Context) (string, error) { return o.kubeletReady(ctx, node) })
	}
	if ok && o.kube != nil {
		_ = step(DrillProbe, o.probeAvailable)
	}
	r.WallTime = time.Since(start)
	return r
}

// until calls check every poll until it says done, or ctx ends; the
// error then carries check's last word.
func (o drillOps) until(ctx context.Context, check func(ctx context.Context) (bool, string, error)) (string, error) {
	var last string
	for {
		ok, detail, err := check(ctx)
		if err != nil {
			last = err.Error()
		} else {
			last = detail
		}
		if ok {
			return detail, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (last: %s)", ctx.Err(), last)
		case <-time.After(o.poll):
		}
	}
}

// apiServing waits until the node's API server is among the endpoints of
// the default/kubernetes Service: it runs, reached its etcd and renewed
// its lease (the endpoint reconciler lists only those).
func (o drillOps) apiServing(ctx context.Context) (string, error) {
	return o.until(ctx, func(ctx context.Context) (bool, string, error) {
		ips, err := steps.APIEndpoints(ctx, o.kube)
		if err != nil {
			return false, "", err
		}
		if slices.Contains(ips, o.apiAddress) {
			return true, fmt.Sprintf("%s among the API endpoints %v", o.apiAddress, ips), nil
		}
		return false, fmt.Sprintf("API endpoints %v, not yet %s", ips, o.apiAddress), nil
	})
}

func (o drillOps) kubeletReady(ctx context.Context, node string) (string, error) {
	return o.until(ctx, func(ctx context.Context) (bool, string, error) {
		nodes, err := o.kube.Nodes(ctx)
		if err != nil {
			return false, "", err
		}
		i := slices.IndexFunc(nodes, func(n kube.Node) bool { return n.Name == node })
		switch {
		case i < 0:
			return false, "not registered with the API server", nil
		case !nodes[i].Ready:
			return false, "registered, not Ready", nil
		}
		return true, "Ready, kubelet " + nodes[i].KubeletVersion, nil
	})
}

func (o drillOps) probeAvailable(ctx context.Context) (string, error) {
	return o.until(ctx, func(ctx context.Context) (bool, string, error) {
		got, err := probeReplicas(ctx, o.kube)
		if err != nil {
			return false, "", err
		}
		if got < kubeplan.ProbeReplicas {
			return false, fmt.Sprintf("probe: %d of %d replicas available", got, kubeplan.ProbeReplicas), nil
		}
		// CoreDNS was drained with the probe: the gate's DNS check after
		// the drill needs it back too.
		dns, err := corednsReplicas(ctx, o.kube)
		if err != nil {
			return false, "", err
		}
		return dns >= kubeplan.CoreDNSReplicas, fmt.Sprintf("probe: %d of %d, coredns: %d of %d replicas available",
			got, kubeplan.ProbeReplicas, dns, kubeplan.CoreDNSReplicas), nil
	})
}
