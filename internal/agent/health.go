package agent

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
)

func (s nodeService) Health(ctx context.Context, req *api.HealthRequest) (*api.Health, error) {
	h := s.n.CheckHealth(ctx)
	if req != nil && req.Pods {
		s.n.addPods(ctx, &h)
	}
	return &h, nil
}

// addPods adds a kubelet node's pods and a "pods" check (reported only:
// a pod is its workload's business, but a rolling upgrade waits for the
// node's pods to be Ready again before it takes the next node down).
func (n *NodeAPI) addPods(ctx context.Context, h *api.Health) {
	if n.cfg.KubePods == nil {
		return
	}
	pods, err := n.cfg.KubePods(ctx)
	if pods == nil && err == nil {
		return // no kubelet here
	}
	h.Pods = pods
	var notReady []string
	for _, p := range pods {
		if !p.Ready {
			notReady = append(notReady, p.Name)
		}
	}
	if err == nil && len(notReady) > 0 {
		err = fmt.Errorf("%d of %d pods not Ready: %s", len(notReady), len(pods), names(notReady, 5))
	}
	c := api.HealthCheck{Name: "pods", OK: err == nil, Detail: fmt.Sprintf("all %d pods on the node Ready", len(pods))}
	if err != nil {
		c.Detail = err.Error()
	}
	h.Checks = append(h.Checks, c)
}

// names joins the first n of ss, saying how many more there are.
func names(ss []string, n int) string {
	if len(ss) <= n {
		return strings.Join(ss, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ss[:n], ", "), len(ss)-n)
}

// CheckHealth runs every health check: enrolled, certificate valid, TPM
// readable, systemd running with no failed unit (critical), and a fresh
// revocation list (critical once older than RevocationMaxAge: revocation
// fails closed).
func (n *NodeAPI) CheckHealth(ctx context.Context) api.Health {
	return n.checkHealth(ctx, n.kubeReadiness(ctx))
}

// kubeReadiness asks the API server about this node's Node (Known false
// on a node without a kubelet).
func (n *NodeAPI) kubeReadiness(ctx context.Context) KubeReadiness {
	if n.cfg.KubeReady == nil {
		return KubeReadiness{}
	}
	return n.cfg.KubeReady(ctx)
}

// checkHealth is CheckHealth with the Node's readiness already asked
// (the metrics report it too, and one question to the API server a
// scrape is enough).
func (n *NodeAPI) checkHealth(ctx context.Context, kube KubeReadiness) api.Health {
	now := n.cfg.Now()
	h := api.Health{FailedUnits: []string{}}
	add := func(name string, critical bool, err error, detail string) {
		c := api.HealthCheck{Name: name, OK: err == nil, Critical: critical, Detail: detail}
		if err != nil {
			c.Detail = err.Error()
		}
		h.Checks = append(h.Checks, c)
	}
	cert, err := n.nodeCertificate()
	add("enrolled", true, err, fmt.Sprintf("identity in %s chains to the cluster CA", n.cfg.IdentityDir))
	if cert != nil {
		var verr error
		switch {
		case now.Before(cert.NotBefore):
			verr = fmt.Errorf("certificate serial %x not valid before %s", cert.SerialNumber, cert.NotBefore.UTC().Format(time.RFC3339))
		case now.After(cert.NotAfter):
			verr = fmt.Errorf("certificate serial %x expired at %s", cert.SerialNumber, cert.NotAfter.UTC().Format(time.RFC3339))
		}
		add("certificate", true, verr, fmt.Sprintf("serial %x valid until %s, renewal at %s", cert.SerialNumber,
			cert.NotAfter.UTC().Format(time.RFC3339), RenewAt(cert).UTC().Format(time.RFC3339)))
	} else {
		add("certificate", true, errors.New("no node certificate"), "")
	}
	add("tpm", true, n.tpmReadable(), "PCR 7 readable in "+n.cfg.PCRDir)

	state, err := n.cfg.System.SystemState(ctx)
	h.SystemState = state
	if err == nil && state != "running" {
		err = fmt.Errorf("systemd is %s", state)
	}
	add("systemd", true, err, "systemd is running")
	// systemd is "running" only with no unit failed ("degraded" with
	// one): the list is asked for otherwise. One tool run instead of two
	// per check, which the console and every scrape make.
	var failed []string
	err = nil
	if state != "running" {
		failed, err = n.cfg.System.FailedUnits(ctx)
	}
	if failed != nil {
		h.FailedUnits = failed
	}
	if err == nil && len(failed) > 0 {
		err = fmt.Errorf("%d failed unit(s): %s", len(failed), strings.Join(failed, ", "))
	}
	add("failed-units", true, err, "no failed unit")

	add("revocations", true, n.revocationsFresh(now), fmt.Sprintf("%d revoked serial(s), fetched %s ago (at most %s)",
		n.cfg.Revocations.Set().Len(), now.Sub(n.fetchedAt()).Round(time.Second), n.revocationMaxAge()))
	// Each controller, reported only: a failing one is restarted, and the
	// checks above say whether the node works.
	if n.cfg.Controllers != nil {
		for _, c := range n.cfg.Controllers.Statuses() {
			h.Checks = append(h.Checks, controllerCheck(c, now))
		}
	}
	if n.cfg.Planes != nil {
		detail, perr := n.planesHealth(now)
		// Reported only, like the revocation list: the planes stay as
		// they were while the hub is away.
		add("planes", false, perr, detail)
	}

	if n.cfg.EtcdHealth != nil {
		// Reported only: a member cut off from its quorum does not make
		// the node unfit (the drills watch it come back).
		if e := n.cfg.EtcdHealth(ctx); e.Known {
			add("etcd", false, e.Err, "the local etcd member has a leader and no alarm")
		}
	}

	// Reported only, like etcd's: a worker whose API server is away is not
	// unfit itself (its boot is still marked good); a rolling upgrade
	// waits for it before it moves on.
	if kube.Known {
		err := kube.Err
		if err == nil && !kube.Ready {
			err = errors.New("the node's Kubernetes Node is registered, not Ready")
		}
		add("kubelet", false, err, "the node's Kubernetes Node is Ready")
	}

	h.Healthy = true
	for _, c := range h.Checks {
		if c.Critical && !c.OK {
			h.Healthy = false
		}
	}
	return h
}

// revocationsFresh is nil while the revocation list is younger than
// RevocationMaxAge; a list never fetched is stale.
func (n *NodeAPI) revocationsFresh(now time.Time) error {
	fetched, ferr := n.cfg.Revocations.Fetched()
	last := ""
	if ferr != nil {
		last = "; last attempt: " + ferr.Error()
	}
	switch {
	case fetched.IsZero():
		return fmt.Errorf("revocation list never fetched from the hub%s", last)
	case now.Sub(fetched) > n.revocationMaxAge():
		return fmt.Errorf("revocation list stale: last fetched %s ago, at most %s allowed%s",
			now.Sub(fetched).Round(time.Second), n.revocationMaxAge(), last)
	}
	return nil
}

// revocationMaxAge is the spec's bound as the hub told it, else the
// node's configured default.
func (n *NodeAPI) revocationMaxAge() time.Duration {
	return n.cfg.Revocations.MaxAge(n.cfg.RevocationMaxAge)
}

func (n *NodeAPI) fetchedAt() time.Time { t, _ := n.cfg.Revocations.Fetched(); return t }

// controllerCheck is a controller's line in `node health`: passing while
// it runs or has finished its work.
func controllerCheck(c ControllerStatus, now time.Time) api.HealthCheck {
	detail := fmt.Sprintf("%s for %s, %d restart(s)", c.State, now.Sub(c.Since).Round(time.Second), c.Restarts)
	if c.LastError != "" {
		detail += "; last error: " + c.LastError
	}
	if c.Detail != "" {
		detail += "; " + c.Detail
	}
	return api.HealthCheck{Name: "controller " + c.Name, OK: c.State == StateRunning || c.State == StateDone, Detail: detail}
}

// planesHealth: the node has joined and applied every plane, and each
// interface the kernel reports is up.
func (n *NodeAPI) planesHealth(now time.Time) (string, error) {
	ifcs, joined, err := n.cfg.Planes.Report()
	switch {
	case err != nil:
		return "", err
	case joined.IsZero() || len(ifcs) == 0:
		return "", errors.New("not joined yet")
	}
	peers := 0
	for _, ifc := range ifcs {
		st := n.cfg.ReadPlane(ifc)
		if st.Error != "" {
			return "", fmt.Errorf("%s: %s", ifc.Name, st.Error)
		}
		if !st.Up {
			return "", fmt.Errorf("%s is down", ifc.Name)
		}
		peers += len(ifc.Peers)
	}
	return fmt.Sprintf("%d plane(s) up with %d peer(s) in all; the hub answered %s ago", len(ifcs), peers, now.Sub(joined).Round(time.Second)), nil
}

// nodeCertificate reads the node's certificate and checks it chains to the
// cluster CA.
func (n *NodeAPI) nodeCertificate() (*x509.Certificate, error) {
	pair, err := n.certs.get(nil)
	if err != nil {
		return nil, err
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, err
		}
	}
	if err := leaf.CheckSignatureFrom(n.cfg.CA); err != nil {
		return leaf, fmt.Errorf("node certificate does not chain to the cluster CA: %w", err)
	}
	return leaf, nil
}

func (n *NodeAPI) tpmReadable() error {
	p := filepath.Join(n.cfg.PCRDir, "7")
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("TPM: %w", err)
	}
	if v := strings.TrimSpace(string(b)); len(v) != 64 {
		return fmt.Errorf("TPM: %s holds %q, not a sha256 value", p, v)
	} else if _, err := hex.DecodeString(v); err != nil {
		return fmt.Errorf("TPM: %s holds %q, not a sha256 value", p, v)
	}
	return nil
}
