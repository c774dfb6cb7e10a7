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
	p, err := k.loadPlan()
	if err != nil || p == nil || !slices.Contains(p.Components, kubeplan.Kubelet) {
		return KubeReadiness{}
	}
	fail := func(err error) KubeReadiness { return KubeReadiness{Known: true, Err: err} }
	pki := func(name string) string { return k.path(path.Join(kubeplan.PKIDir, name)) }
	pair, err := tls.LoadX509KeyPair(pki("kubelet-client.crt"), pki("kubelet-client.key"))
	if err != nil {
		return fail(fmt.Errorf("kubelet client certificate: %w", err))
	}
	roots, err := k.kubeCA()
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	u := p.APIServer + "/api/v1/nodes/" + url.PathEscape(p.Node)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fail(err)
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair},
		MinVersion: tls.VersionTLS12}}}
	defer cl.CloseIdleConnections()
	res, err := cl.Do(req)
	if err != nil {
		return fail(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("GET %s: %s", u, res.Status))
	}
	var node struct {
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	}
	b, err := boundedio.ReadAll(res.Body, maxNodeObject, "node "+p.Node+" from the API server")
	if err != nil {
		return fail(err)
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

// kubeReady is k's NodeReady, nil without a Kubernetes runner.
func kubeReady(k *kubeRunner) func(context.Context) KubeReadiness {
	if k == nil {
		return nil
	}
	return k.NodeReady
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
