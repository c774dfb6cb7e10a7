package hubhost

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/etcdsnap"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// etcd snapshots on the master (issue 16): once the hub serves there, it
// asks an etcd member for a snapshot every EtcdSnapshotEvery and keeps the
// newest EtcdSnapshotKeep in KeeperConfig.EtcdSnapshotDir, on the master's
// data partition (docs/kubernetes.md), and answers for them: readers list
// them, and a sealed acceptance record names one it holds.
const (
	EtcdSnapshotEvery = time.Hour
	EtcdSnapshotKeep  = 24
	// etcdSnapshotFirst lets a cluster that is coming up form its quorum
	// before the first snapshot.
	etcdSnapshotFirst = 5 * time.Minute
	// etcdSnapshotCertLife bounds the client certificate the hub makes for
	// each snapshot from the etcd CA it holds.
	etcdSnapshotCertLife = 15 * time.Minute
	etcdSnapshotTimeout  = 10 * time.Minute
)

// EtcdSnapshotCN is the client certificate's name: etcd logs it.
const EtcdSnapshotCN = "kubedos-hub-etcd-snapshot"

// etcdMembers are the members to ask, in spec order, at their LAN client
// URLs (where the master reaches them; the firewall lets it).
func etcdMembers(s *spec.ClusterSpec) []etcdsnap.Member {
	var out []etcdsnap.Member
	for _, n := range kubeplan.EtcdNodes(s) {
		a, err := netip.ParseAddr(n.Address)
		if err != nil {
			continue
		}
		out = append(out, etcdsnap.Member{Name: n.Name, URL: "https://" + netip.AddrPortFrom(a, kubeplan.EtcdClientPort).String()})
	}
	return out
}

// snapshotEtcd takes one snapshot with a fresh short-lived client
// certificate of the etcd CA.
func snapshotEtcd(ctx context.Context, etcdCA *pki.CA, members []etcdsnap.Member, dir string, now time.Time) (*etcdsnap.Snapshot, error) {
	cert, err := etcdCA.IssueClient(EtcdSnapshotCN, pki.RoleReader, etcdSnapshotCertLife, now)
	if err != nil {
		return nil, err
	}
	pair, err := cert.TLSCertificate()
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: etcdCA.Pool(), Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, etcdSnapshotTimeout)
	defer cancel()
	return etcdsnap.Take(ctx, &http.Client{Transport: tr}, members, dir, EtcdSnapshotKeep, now)
}

// snapshotTaker takes the hub's etcd snapshots, one at a time: the hourly
// ones and those an operator asks for (kubedos cluster snapshots take)
// write and prune the same directory.
type snapshotTaker struct {
	cfg     Config
	members []etcdsnap.Member // etcdMembers(cfg.Spec)
	mu      sync.Mutex
	last    time.Time // when the last one was named
}

func (t *snapshotTaker) take(ctx context.Context) (etcdsnap.Snapshot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now
	if t.cfg.Now != nil {
		now = t.cfg.Now
	}
	at := now()
	// Names are to the second: a second take within the same second
	// would replace the first's file, whose digest a sealed record may
	// already name. It waits for the next second instead.
	if at.Unix() == t.last.Unix() {
		select {
		case <-ctx.Done():
			return etcdsnap.Snapshot{}, ctx.Err()
		case <-time.After(time.Second - time.Duration(at.Nanosecond())):
		}
		at = t.last.Truncate(time.Second).Add(time.Second)
		if n := now(); n.After(at) {
			at = n
		}
	}
	t.last = at
	s, err := snapshotEtcd(ctx, t.cfg.Kube.Etcd, t.members, t.cfg.EtcdSnapshotDir, at)
	if err != nil {
		return etcdsnap.Snapshot{}, err
	}
	return *s, nil
}

// keepsEtcdSnapshots reports whether a hub of cfg takes and keeps etcd
// snapshots: given a directory, the etcd CA and a cluster that runs etcd.
// Such a hub answers for them (hub.Options.EtcdSnapshots).
func keepsEtcdSnapshots(cfg Config) bool {
	return cfg.EtcdSnapshotDir != "" && cfg.Kube != nil && cfg.Kube.Etcd != nil && len(etcdMembers(cfg.Spec)) > 0
}

// serveSnapshots takes the snapshots while ctx (the hub's) lasts, when
// configured and the cluster runs etcd.
func (k *Keeper) serveSnapshots(ctx context.Context, h *Hub) {
	if h.snaps == nil {
		return
	}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		wait := etcdSnapshotFirst
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = EtcdSnapshotEvery
			s, err := h.snaps.take(ctx)
			if err != nil {
				k.cfg.Logf("hub: %v", err)
				continue
			}
			k.cfg.Logf("hub: etcd snapshot %s from %s: %d bytes, sha256 %s", s.Name, s.Member, s.Bytes, s.SHA256)
		}
	}()
}
