package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/kubedos/kubedos/internal/boundedio"
	"github.com/kubedos/kubedos/internal/kubeplan"
)

// EtcdHealth is what the local etcd member says of itself: Known false on
// a node that runs no etcd (or has no plan yet); Err when it is not
// healthy or could not be asked.
type EtcdHealth struct {
	Known bool
	Err   error
}

// etcdHealthURL is the member's own /health on its plain metrics listener
// (the firewall keeps it off the LAN): "true" only while the member has a
// leader and no alarm, so a member that came back and rejoined its quorum
// says so, and one cut off from it does not.
var etcdHealthURL = "http://127.0.0.1:" + strconv.Itoa(kubeplan.EtcdMetricsPort) + "/health"

// maxEtcdHealth bounds etcd's /health answer (a few dozen bytes).
const maxEtcdHealth = 4 << 10

// EtcdHealth asks the node's etcd member for its health.
func (k *kubeRunner) EtcdHealth(ctx context.Context) EtcdHealth {
	p, err := k.loadPlan()
	if err != nil || p == nil || !slices.Contains(p.Components, kubeplan.Etcd) {
		return EtcdHealth{}
	}
	fail := func(err error) EtcdHealth { return EtcdHealth{Known: true, Err: err} }
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	url := k.etcdHealth
	if url == "" {
		url = etcdHealthURL
	}
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if err := askEtcdHealth(ctx, cl, url, p.Node); err != nil {
		return fail(err)
	}
	return EtcdHealth{Known: true}
}

// askEtcdHealth GETs a member's /health (url) and is nil only when it
// says "true"; otherwise why not, naming the member, bounded. The local
// member's check and a joining member's look at its peers share it.
func askEtcdHealth(ctx context.Context, cl *http.Client, url, member string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("etcd member %s: %w", member, err)
	}
	defer res.Body.Close()
	b, err := boundedio.ReadAll(res.Body, maxEtcdHealth, "etcd /health")
	if err != nil {
		return err
	}
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return fmt.Errorf("etcd member %s: /health answered %s: %w", member, res.Status, err)
	}
	if h.Health != "true" {
		reason := h.Reason
		if reason == "" {
			reason = res.Status
		}
		return fmt.Errorf("etcd member %s is not healthy: %s", member, clipString(reason))
	}
	return nil
}

// etcdHealth is k's EtcdHealth, nil without a Kubernetes runner.
func etcdHealth(k *kubeRunner) func(context.Context) EtcdHealth {
	if k == nil {
		return nil
	}
	return k.EtcdHealth
}

// etcdMembership is k as the node API's EtcdMembership, nil without a
// Kubernetes runner (a typed nil would look like one).
func etcdMembership(k *kubeRunner) EtcdMembership {
	if k == nil {
		return nil
	}
	return k
}
