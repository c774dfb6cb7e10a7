package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/boundedio"
	"github.com/kubedos/kubedos/internal/kubeplan"
)

// KubeReadiness is whether this node's Kubernetes Node is Ready, as the
// API server says: Known false on a node that runs no kubelet (or has no
// plan yet); Err when the API server could not be asked.
type KubeReadiness struct {
	Known, Ready bool
	Err          error
}

// maxNodeObject bounds the Node object read from the API server.
const maxNodeObject = 1 << 20

// NodeReady asks the API server, as this node's kubelet (its client
// certificate: the Node authorizer lets system:node:<name> read its own
// Node), for the Node's Ready condition. kubedosd reports it in its
// metrics (kubedos_kubernetes_node_ready), so the prometheus node alerts
// on a NotReady node without holding any Kubernetes credential.
func (k *kubeRunner) NodeReady(ctx context.Context) KubeReadiness {
	p := k.kubeletPlan()
	if p == nil {
		return KubeReadiness{}
	}
	fail := func(err error) KubeReadiness { return KubeReadiness{Known: true, Err: err} }
	b, err := k.askAsKubelet(ctx, p, "/api/v1/nodes/"+url.PathEscape(p.Node), maxNodeObject, "node "+p.Node)
	if err != nil {
		return fail(err)
	}
	var node struct {
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(b, &node); err != nil {
		return fail(fmt.Errorf("node %s: %w", p.Node, err))
	}
	for _, c := range node.Status.Conditions {
		if c.Type == "Ready" {
			return KubeReadiness{Known: true, Ready: c.Status == "True"}
		}
	}
	return KubeReadiness{Known: true} // no Ready condition yet: not ready
}

// Bounds on the pod list a node reads about itself: the API server is
// trusted, but what it says is stored in replies and logged.
const (
	maxPodList = 8 << 20
	maxPods    = 256
)

// NodePods lists the pods bound to this node that run or start (not
// finished, not being deleted) and whether each is Ready, asked as the
// kubelet (the Node authorizer lets a node list the pods bound to it,
// with exactly this field selector). Nil, nil on a node without a kubelet.
func (k *kubeRunner) NodePods(ctx context.Context) ([]api.PodReadiness, error) {
	p := k.kubeletPlan()
	if p == nil {
		return nil, nil
	}
	q := url.Values{"fieldSelector": {"spec.nodeName=" + p.Node}}
	b, err := k.askAsKubelet(ctx, p, "/api/v1/pods?"+q.Encode(), maxPodList, "pods of node "+p.Node)
	if err != nil {
		return nil, err
	}
	return parsePods(b)
}

// parsePods is the readiness of a pod list's running or starting pods,
// at most maxPods of them.
func parsePods(b []byte) ([]api.PodReadiness, error) {
	var list struct {
		Items []struct {
			Metadata struct {
				Namespace         string  `json:"namespace"`
				Name              string  `json:"name"`
				DeletionTimestamp *string `json:"deletionTimestamp"`
			} `json:"metadata"`
			Status struct {
				Phase      string `json:"phase"`
				Conditions []struct {
					Type   string `json:"type"`
					Status string `json:"status"`
				} `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("pod list: %w", err)
	}
	out := []api.PodReadiness{}
	for _, it := range list.Items {
		if it.Metadata.DeletionTimestamp != nil || it.Status.Phase == "Succeeded" || it.Status.Phase == "Failed" {
			continue
		}
		if len(out) == maxPods {
			return out, fmt.Errorf("pod list: more than %d pods on the node; the first %d kept", maxPods, maxPods)
		}
		pr := api.PodReadiness{Name: clipName(it.Metadata.Namespace) + "/" + clipName(it.Metadata.Name)}
		for _, c := range it.Status.Conditions {
			if c.Type == "Ready" {
				pr.Ready = c.Status == "True"
			}
		}
		out = append(out, pr)
	}
	return out, nil
}

// clipName bounds a Kubernetes name (at most 253 bytes when valid).
func clipName(s string) string {
	if len(s) > 253 {
		return s[:253]
	}
	return s
}

// kubeletPlan is the node's plan when it runs a kubelet, else nil.
func (k *kubeRunner) kubeletPlan() *kubeplan.Plan {
	p, err := k.loadPlan()
	if err != nil || p == nil || !slices.Contains(p.Components, kubeplan.Kubelet) {
		return nil
	}
	return p
}

// askAsKubelet GETs path from the plan's API server with the kubelet's
// client certificate, reading at most limit bytes (3 s a question).
func (k *kubeRunner) askAsKubelet(ctx context.Context, p *kubeplan.Plan, pth string, limit int64, what string) ([]byte, error) {
	pki := func(name string) string { return k.path(path.Join(kubeplan.PKIDir, name)) }
	pair, err := tls.LoadX509KeyPair(pki("kubelet-client.crt"), pki("kubelet-client.key"))
	if err != nil {
		return nil, fmt.Errorf("kubelet client certificate: %w", err)
	}
	roots, err := k.kubeCA()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	u := p.APIServer + pth
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair},
		MinVersion: tls.VersionTLS12}}}
	defer cl.CloseIdleConnections()
	res, err := cl.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, res.Status)
	}
	return boundedio.ReadAll(res.Body, limit, what+" from the API server")
}

// kubeReady is k's NodeReady, nil without a Kubernetes runner.
func kubeReady(k *kubeRunner) func(context.Context) KubeReadiness {
	if k == nil {
		return nil
	}
	return k.NodeReady
}

// kubePods is k's NodePods, nil without a Kubernetes runner.
func kubePods(k *kubeRunner) func(context.Context) ([]api.PodReadiness, error) {
	if k == nil {
		return nil
	}
	return k.NodePods
}

// EarlierAPIsReady is nil when the API server of every control plane
// before this one (in the spec's order: the plan's etcd members, stacked
// on the control planes, or its ControlPlanes where etcd is external) is
// ready; otherwise why not, naming the first that is not. A joining
// control plane asks it before its API server's first start.
func (k *kubeRunner) EarlierAPIsReady(ctx context.Context, p *kubeplan.Plan) error {
	earlier, err := earlierAPIs(p)
	if err != nil {
		return err
	}
	port := kubeplan.APIServerPort
	if k.apiPort != 0 {
		port = k.apiPort
	}
	for _, c := range earlier {
		api := "https://" + net.JoinHostPort(c.Address, strconv.Itoa(port))
		if err := k.APIReady(ctx, api, c.Name); err != nil {
			return fmt.Errorf("control plane %s: %w", c.Name, err)
		}
	}
	return nil
}

// earlierAPIs are the control planes whose API servers start before this
// one's: the etcd members before it where they are stacked, else the
// plan's ControlPlanes.
func earlierAPIs(p *kubeplan.Plan) ([]kubeplan.Backend, error) {
	if len(p.EtcdMembers) == 0 { // etcd nodes of their own
		return p.ControlPlanes, nil
	}
	var out []kubeplan.Backend
	for _, m := range p.EtcdMembers {
		if m.Name == p.Node {
			break
		}
		u, err := url.Parse(m.PeerURL)
		if err != nil {
			return nil, fmt.Errorf("etcd member %s: %w", m.Name, err)
		}
		out = append(out, kubeplan.Backend{Name: m.Name, Address: u.Hostname()})
	}
	return out, nil
}

// APIReady is nil when the API server at base answers GET /readyz with
// 200, its certificate verified against the Kubernetes CA for serverName
// (every API server's certificate names its node). /readyz needs no
// credentials (system:public-info-viewer), as for haproxy's checks.
func (k *kubeRunner) APIReady(ctx context.Context, base, serverName string) error {
	roots, err := k.kubeCA()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u := base + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}}}
	res, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, res.Status)
	}
	return nil
}

// kubeCA is the Kubernetes CA the hub sent, as a pool to verify API
// servers against.
func (k *kubeRunner) kubeCA() (*x509.CertPool, error) {
	caPEM, err := os.ReadFile(k.path(path.Join(kubeplan.PKIDir, "ca.crt")))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("kubernetes CA: no certificate")
	}
	return roots, nil
}
