package hubhost

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/etcdsnap"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/pki/pkitest"
	"github.com/kubedos/kubedos/internal/spec"
)

// The hub asks members at their LAN client URLs, in spec order, with a
// short-lived client certificate of the etcd CA it holds; a member that
// does not know that CA gets no snapshot out of it.
func TestSnapshotEtcd(t *testing.T) {
	s, err := spec.LoadBytes(examples.LocalHA)
	if err != nil {
		t.Fatal(err)
	}
	got := etcdMembers(s)
	if len(got) != 3 || got[0] != (etcdsnap.Member{Name: "cp-1", URL: "https://10.50.0.11:2379"}) || got[2].Name != "cp-3" {
		t.Fatalf("members %+v", got)
	}

	now := time.Now()
	etcdCA := pkitest.NewCAWith(t, "etcd CA", now.Add(-time.Hour), now.Add(time.Hour))
	other := pkitest.NewCAWith(t, "another CA", now.Add(-time.Hour), now.Add(time.Hour))
	data := []byte("snapshot bytes")
	sum := sha256.Sum256(data)
	var cn string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn = r.TLS.PeerCertificates[0].Subject.CommonName
		fmt.Fprintf(w, `{"result":{"blob":"%s"}}`+"\n", base64.StdEncoding.EncodeToString(append(data, sum[:]...)))
	}))
	srvCert, err := etcdCA.IssueServer([]string{"127.0.0.1"}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	pair, _ := srvCert.TLSCertificate()
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: etcdCA.Pool()}
	srv.StartTLS()
	defer srv.Close()

	// Two takes in one second get two names: the second waits for the
	// next second rather than replace the first's file.
	taker := &snapshotTaker{cfg: Config{Kube: &pki.KubeCAs{Etcd: etcdCA}, EtcdSnapshotDir: t.TempDir(), Now: func() time.Time { return now }},
		members: []etcdsnap.Member{{Name: "cp-1", URL: srv.URL}}}
	first, err := taker.take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	second, err := taker.take(context.Background())
	if err != nil || second.Name == first.Name {
		t.Errorf("two takes in one second: %q and %q (%v)", first.Name, second.Name, err)
	}

	dir := t.TempDir()
	snap, err := snapshotEtcd(context.Background(), etcdCA, []etcdsnap.Member{{Name: "cp-1", URL: srv.URL}}, dir, now)
	if err != nil || cn != EtcdSnapshotCN || snap.Bytes != int64(len(data)+32) {
		t.Fatalf("snapshot %+v %v, client %q", snap, err, cn)
	}
	if _, err := snapshotEtcd(context.Background(), other, []etcdsnap.Member{{Name: "cp-1", URL: srv.URL}}, dir, now.Add(time.Minute)); err == nil ||
		!strings.Contains(err.Error(), "cp-1") {
		t.Errorf("a client of another CA got a snapshot: %v", err)
	}
}

// TestHubAnswersForEtcdSnapshots: a hub given a snapshot directory and the
// etcd CA of a cluster that runs etcd lists what it keeps there; without
// the etcd CA (so it takes none) it says it keeps none.
func TestHubAnswersForEtcdSnapshots(t *testing.T) {
	s, err := spec.LoadBytes(examples.LocalHA)
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	if _, err := pki.InitKubeKeys(keys, s.Metadata.Name, time.Now()); err != nil {
		t.Fatal(err)
	}
	files, err := pki.ReadKubeFiles(keys)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := pki.ParseKubeFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	name := "etcd-20261206T150000Z-cp-1.db"
	if err := os.WriteFile(filepath.Join(dir, name), []byte("snapshot bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	reader := pki.Peer{Name: "rita", Role: pki.RoleReader}
	for _, tt := range []struct {
		name string
		kube *pki.KubeCAs
		want int
	}{{"with the etcd CA", kube, 1}, {"without it", nil, 0}} {
		h, err := Open(context.Background(), Config{Spec: s, Manifest: &manifest.Manifest{Cluster: s.Metadata.Name, BuildID: "b-1"},
			CA: newTestCA(t, "kubedos CA").CA, StatePath: filepath.Join(t.TempDir(), FileState), Kube: tt.kube, EtcdSnapshotDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.EtcdSnapshots(context.Background(), reader)
		if tt.want == 0 {
			// One that takes none says so when an operator asks for one.
			if _, terr := h.TakeEtcdSnapshot(context.Background(), pki.Peer{Name: "otto", Role: pki.RoleOperator}); terr == nil ||
				!strings.Contains(terr.Error(), "takes no etcd snapshots") {
				t.Errorf("%s: take: %v", tt.name, terr)
			}
		} else if h.snaps == nil {
			t.Errorf("%s: the hub has no snapshot taker", tt.name)
		}
		h.Close()
		if err != nil || got.Kept != (tt.want > 0) || len(got.Snapshots) != tt.want || (tt.want > 0 && got.Snapshots[0].Name != name) {
			t.Errorf("%s: %+v %v", tt.name, got, err)
		}
	}
}
