package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/boundedio"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/kubeplan"
)

// An etcd member whose data directory is empty either bootstraps the
// cluster with the others (a new cluster: every member starts empty) or
// replaces a member of a running cluster (its node was replaced: fresh
// disk, same name and address). Started as "new" in a running cluster it
// would be taken for the old member and panic on the leader's first
// heartbeat ("tocommit is out of range"), so the replacement removes its
// stale self from the cluster, adds itself, and starts as "existing".
// Which case holds is asked of the other members: a running cluster has
// a healthy member; a bootstrapping one has none yet (no leader).

// EtcdJoinFile records a join decided for the current data directory, so
// a restart of kubedosd starts etcd with the same flags (a change would
// restart it). It goes with the data directory: one without the other is
// a stale record.
var EtcdJoinFile = path.Join(kubeplan.Dir, "etcd-join.json")

// etcdMemberDir exists once etcd has written its data directory.
var etcdMemberDir = path.Join(kubeplan.EtcdDataDir, "member")

// maxEtcdAnswer bounds an etcd API answer (a member list).
const maxEtcdAnswer = 1 << 20

// etcdPrepare sets p.EtcdJoin when this member joins a running cluster,
// deciding it once per data directory. It needs the member's etcd
// certificates (the caller checks the component's inputs first).
func (k *kubeRunner) etcdPrepare(ctx context.Context, p *kubeplan.Plan) error {
	marker := k.path(EtcdJoinFile)
	if _, err := os.Stat(k.path(etcdMemberDir)); err == nil {
		if raw, err := os.ReadFile(marker); err == nil {
			var j kubeplan.EtcdJoin
			if err := json.Unmarshal(raw, &j); err != nil || validJoin(j, p) != nil {
				return fmt.Errorf("%s: not a join record this node made", EtcdJoinFile)
			}
			p.EtcdJoin = &j
		}
		return nil
	}
	_ = os.Remove(marker) // a record without its data directory is stale
	if len(p.EtcdMembers) < 2 {
		return nil
	}
	cl, err := k.etcdClient()
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	var running string
	for _, m := range p.EtcdMembers {
		if m.Name == p.Node {
			continue
		}
		if k.etcdPeerHealthy(ctx, cl, m) {
			running = m.Name
			break
		}
	}
	if running == "" {
		return nil // bootstrapping with the others: start as new
	}
	m, _ := findMember(p.EtcdMembers, running)
	j, err := k.etcdJoin(ctx, cl, p, k.clientURL(m))
	if err != nil {
		return fmt.Errorf("etcd: joining the running cluster through %s: %w", running, err)
	}
	raw, _ := json.Marshal(j)
	if err := durable.WriteFile(marker, raw, 0o600); err != nil {
		return err
	}
	k.logf("kubernetes: etcd member %s joins the running cluster through %s (%d members)", p.Node, running, len(j.Members))
	p.EtcdJoin = j
	return nil
}

// clientURL is a member's client URL: its peer URL's address on the
// client port (or the test's).
func (k *kubeRunner) clientURL(m kubeplan.EtcdMember) string {
	if k.etcdClientURL != nil {
		return k.etcdClientURL(m)
	}
	ap, err := netip.ParseAddrPort(strings.TrimPrefix(m.PeerURL, "https://"))
	if err != nil {
		return ""
	}
	return "https://" + netip.AddrPortFrom(ap.Addr(), kubeplan.EtcdClientPort).String()
}

func findMember(ms []kubeplan.EtcdMember, name string) (kubeplan.EtcdMember, bool) {
	for _, m := range ms {
		if m.Name == name {
			return m, true
		}
	}
	return kubeplan.EtcdMember{}, false
}

// etcdClient authenticates with the member's server certificate (server
// and client usage) against the etcd CA.
func (k *kubeRunner) etcdClient() (*http.Client, error) {
	pki := func(name string) string { return k.path(path.Join(kubeplan.PKIDir, name)) }
	pair, err := tls.LoadX509KeyPair(pki("etcd-server.crt"), pki("etcd-server.key"))
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate: %w", err)
	}
	caPEM, err := os.ReadFile(pki("etcd-ca.crt"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("etcd CA: no certificate")
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}}, nil
}

// etcdPeerHealthy: the member answers /health with "true" (it has a
// leader: the cluster runs).
func (k *kubeRunner) etcdPeerHealthy(ctx context.Context, cl *http.Client, m kubeplan.EtcdMember) bool {
	u := k.clientURL(m)
	if u == "" {
		return false
	}
	return askEtcdHealth(ctx, cl, u+"/health", m.Name) == nil
}

// etcdAPIMember is a member as etcd's JSON gateway writes it (uint64 IDs
// as strings).
type etcdAPIMember struct {
	ID       string   `json:"ID"`
	Name     string   `json:"name"`
	PeerURLs []string `json:"peerURLs"`
}

// etcdJoin removes this node's stale member (same name or peer URL), adds
// it anew, and returns the members to start with.
func (k *kubeRunner) etcdJoin(ctx context.Context, cl *http.Client, p *kubeplan.Plan, base string) (*kubeplan.EtcdJoin, error) {
	self, ok := findMember(p.EtcdMembers, p.Node)
	if !ok {
		return nil, fmt.Errorf("the plan does not list %s as an etcd member", p.Node)
	}
	var list struct {
		Members []etcdAPIMember `json:"members"`
	}
	if err := etcdCall(ctx, cl, base, "/v3/cluster/member/list", struct{}{}, &list); err != nil {
		return nil, err
	}
	for _, m := range list.Members {
		stale := m.Name == p.Node
		for _, u := range m.PeerURLs {
			stale = stale || u == self.PeerURL
		}
		if !stale {
			continue
		}
		if _, err := strconv.ParseUint(m.ID, 10, 64); err != nil {
			return nil, fmt.Errorf("member list: ID %q", clipString(m.ID))
		}
		if err := etcdCall(ctx, cl, base, "/v3/cluster/member/remove", map[string]string{"ID": m.ID}, nil); err != nil {
			return nil, fmt.Errorf("removing the stale member %s: %w", m.ID, err)
		}
		k.logf("kubernetes: removed the stale etcd member %s (%s) before joining again", m.ID, clipString(m.Name))
	}
	var added struct {
		Members []etcdAPIMember `json:"members"`
	}
	if err := etcdCall(ctx, cl, base, "/v3/cluster/member/add", map[string][]string{"peerURLs": {self.PeerURL}}, &added); err != nil {
		return nil, fmt.Errorf("adding %s: %w", self.PeerURL, err)
	}
	j := &kubeplan.EtcdJoin{}
	for _, m := range added.Members {
		if len(m.PeerURLs) == 0 {
			continue
		}
		name := m.Name
		if m.PeerURLs[0] == self.PeerURL {
			name = p.Node // the added member has no name until it starts
		}
		j.Members = append(j.Members, kubeplan.EtcdMember{Name: name, PeerURL: m.PeerURLs[0]})
	}
	if err := validJoin(*j, p); err != nil {
		return nil, err
	}
	return j, nil
}

// validJoin: every member has a name and an https://address:port peer
// URL (they reach a command line), and this node is one of them.
func validJoin(j kubeplan.EtcdJoin, p *kubeplan.Plan) error {
	if len(j.Members) == 0 || len(j.Members) > 64 {
		return fmt.Errorf("etcd join: %d members", len(j.Members))
	}
	self := false
	for _, m := range j.Members {
		if !validKubeName(m.Name) {
			return fmt.Errorf("etcd join: member name %q", clipString(m.Name))
		}
		if _, err := netip.ParseAddrPort(strings.TrimPrefix(m.PeerURL, "https://")); err != nil || !strings.HasPrefix(m.PeerURL, "https://") {
			return fmt.Errorf("etcd join: peer URL %q", clipString(m.PeerURL))
		}
		self = self || m.Name == p.Node
	}
	if !self {
		return fmt.Errorf("etcd join: %s is not among the members", p.Node)
	}
	return nil
}

// etcdCall POSTs body as JSON to etcd's gateway and decodes the answer.
func etcdCall(ctx context.Context, cl *http.Client, base, api string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+api, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, err := boundedio.ReadAll(res.Body, maxEtcdAnswer, "etcd "+api)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", api, res.Status, clipString(strings.TrimSpace(string(raw))))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s: %w", api, err)
	}
	return nil
}
