package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/etcdsnap"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// restoreRunner is cp-2 of local-ha (a stacked etcd member and API
// server) with a data directory holding "old" and a join record; its
// etcdutl writes the spooled snapshot into the new data directory, or
// fails when fail is set. args receives etcdutl's arguments.
func restoreRunner(t *testing.T, fail error) (k *kubeRunner, units *fakeUnits, args *[]string) {
	t.Helper()
	k, units, _ = newTestRunner(t, planOf(t, examples.LocalHA, "cp-2"))
	writeTestFile(t, k.root, filepath.Join(kubeplan.EtcdDataDir, "member", "snap", "db"), []byte("old"))
	writeTestFile(t, k.root, EtcdJoinFile, []byte(`{"members":[]}`))
	args = new([]string)
	k.etcdutl = func(_ context.Context, a ...string) error {
		*args = a
		if k.runMu.TryLock() {
			k.runMu.Unlock()
			t.Error("etcdutl ran while the controller's loop could run")
		}
		if fail != nil {
			return fail
		}
		var dir string
		for _, s := range a {
			if v, ok := strings.CutPrefix(s, "--data-dir="); ok {
				dir = v
			}
		}
		snap, err := os.ReadFile(a[2])
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, "member", "snap"), 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "member", "snap", "db"), snap, 0o600)
	}
	return k, units, args
}

func beginFor(snapshot []byte) api.EtcdRestoreBegin {
	sum := sha256.Sum256(snapshot)
	return api.EtcdRestoreBegin{Snapshot: "etcd-20261207T210000Z-cp-1.db", Bytes: int64(len(snapshot)),
		SHA256: hex.EncodeToString(sum[:]), Token: "local-ha-restore-1"}
}

func readRoot(t *testing.T, k *kubeRunner, p string) string {
	t.Helper()
	b, err := os.ReadFile(k.path(p))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return string(b)
}

// spoolLeft lists restore spools left beside the data directory.
func spoolLeft(t *testing.T, k *kubeRunner) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(filepath.Dir(k.path(kubeplan.EtcdDataDir)), ".etcd-restore-*"))
	return m
}

// An API server whose graceful stop hangs (its requests waiting on an
// etcd member cut off by the restore of the others) is killed after
// apiStopGrace, and the restore goes on, saying so in its steps.
func TestEtcdRestoreKillsAHangingAPIServer(t *testing.T) {
	k, units, _ := restoreRunner(t, nil)
	k.apiStopGrace = 50 * time.Millisecond
	units.hang, units.killed = "kube-apiserver.service", make(chan struct{})
	snap := []byte("snapshot bytes")
	res, err := k.EtcdRestore(context.Background(), beginFor(snap), bytes.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"stop (gave up) kube-apiserver.service", "kill kube-apiserver.service", "stop kube-apiserver.service",
		"stop kubedos-etcd.service", "queue kubedos-etcd.service"}
	if got := units.take(); !slices.Equal(got, want) {
		t.Errorf("units: %v, want %v", got, want)
	}
	if !slices.ContainsFunc(res.Steps, func(s string) bool {
		return strings.HasPrefix(s, "stop kube-apiserver.service (killed after 50ms of graceful stop): ")
	}) {
		t.Errorf("steps %q do not say the API server was killed", res.Steps)
	}
}

// A restore stops the API server and etcd, restores with the plan's
// members and the caller's token, keeps the old data beside the new,
// drops the old data's join record, starts etcd, and leaves the API
// server to the loop as at its first start.
func TestEtcdRestore(t *testing.T) {
	k, units, args := restoreRunner(t, nil)
	k.started = map[kubeplan.Component]string{kubeplan.APIServer: "x", kubeplan.Etcd: "y", kubeplan.Kubelet: "z"}
	snap := []byte("snapshot bytes")
	res, err := k.EtcdRestore(context.Background(), beginFor(snap), bytes.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"stop kube-apiserver.service", "stop kubedos-etcd.service", "queue kubedos-etcd.service"}
	if got := units.take(); !slices.Equal(got, want) {
		t.Errorf("units: %v, want %v", got, want)
	}
	db := filepath.Join(kubeplan.EtcdDataDir, "member", "snap", "db")
	if got := readRoot(t, k, db); got != string(snap) {
		t.Errorf("data directory holds %q, want the snapshot", got)
	}
	if got := readRoot(t, k, filepath.Join(EtcdPreviousDir, "member", "snap", "db")); got != "old" {
		t.Errorf("previous data holds %q, want the old data", got)
	}
	if _, err := os.Stat(k.path(EtcdJoinFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old data's join record is still there: %v", err)
	}
	if _, err := os.Stat(k.path(etcdRestoredDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the restored directory is still beside the data directory: %v", err)
	}
	if l := spoolLeft(t, k); len(l) > 0 {
		t.Errorf("spool left: %v", l)
	}
	for _, a := range []string{"snapshot", "restore", "--name=cp-2",
		"--initial-cluster=cp-1=https://10.50.0.11:2380,cp-2=https://10.50.0.12:2380,cp-3=https://10.50.0.13:2380",
		"--initial-advertise-peer-urls=https://10.50.0.12:2380", "--initial-cluster-token=local-ha-restore-1",
		"--bump-revision=1000000000", "--mark-compacted", "--data-dir=" + k.path(etcdRestoredDir)} {
		if !slices.Contains(*args, a) {
			t.Errorf("etcdutl's arguments %q lack %q", *args, a)
		}
	}
	if k.everStarted(kubeplan.APIServer) || k.everStarted(kubeplan.Etcd) || !k.everStarted(kubeplan.Kubelet) {
		t.Errorf("after a restore the API server and etcd must start as at first, the rest untouched: %v", k.started)
	}
	if res.Previous != EtcdPreviousDir || res.Node != "cp-2" || res.DataDir != kubeplan.EtcdDataDir || len(res.Steps) != 6 {
		t.Errorf("result %+v", res)
	}

	// A second restore replaces the kept data with the first restore's.
	snap2 := []byte("later snapshot")
	if _, err := k.EtcdRestore(context.Background(), beginFor(snap2), bytes.NewReader(snap2)); err != nil {
		t.Fatal(err)
	}
	if got := readRoot(t, k, filepath.Join(EtcdPreviousDir, "member", "snap", "db")); got != string(snap) {
		t.Errorf("previous data after a second restore holds %q, want the first restore's", got)
	}
}

// Bytes that are not the announced snapshot, and a begin message that is
// not one, are refused before anything is stopped; nothing is left.
func TestEtcdRestoreRefusedBeforeStopping(t *testing.T) {
	snap := []byte("snapshot bytes")
	good := beginFor(snap)
	with := func(f func(b *api.EtcdRestoreBegin)) api.EtcdRestoreBegin { b := good; f(&b); return b }
	for _, tt := range []struct {
		name  string
		begin api.EtcdRestoreBegin
		data  []byte
		want  string
	}{
		{"other bytes", good, []byte("snapshot bytez"), "not the one announced"},
		{"cut short", good, snap[:5], "not the one announced"},
		{"longer", good, append(slices.Clone(snap), 'x'), "not the one announced"},
		{"no snapshot name", with(func(b *api.EtcdRestoreBegin) { b.Snapshot = "../hub.db" }), snap, "not a kept snapshot's name"},
		{"size 0", with(func(b *api.EtcdRestoreBegin) { b.Bytes = 0 }), snap, "snapshot size 0"},
		{"size over etcd's", with(func(b *api.EtcdRestoreBegin) { b.Bytes = 3 << 30 }), snap, "want 1 to"},
		{"digest upper case", with(func(b *api.EtcdRestoreBegin) { b.SHA256 = strings.ToUpper(b.SHA256) }), snap, "not 64 lower-case hex"},
		{"token not a label", with(func(b *api.EtcdRestoreBegin) { b.Token = "a token" }), snap, "not a DNS label"},
		{"long token clipped", with(func(b *api.EtcdRestoreBegin) { b.Token = strings.Repeat("x", 5000) }), snap, "not a DNS label"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, units, _ := restoreRunner(t, nil)
			_, err := k.EtcdRestore(context.Background(), tt.begin, bytes.NewReader(tt.data))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrInvalid with %q", err, tt.want)
			}
			if len(err.Error()) > 1000 {
				t.Errorf("the error repeats the caller's words unbounded: %d bytes", len(err.Error()))
			}
			if got := units.take(); len(got) > 0 {
				t.Errorf("units touched: %v", got)
			}
			if got := readRoot(t, k, filepath.Join(kubeplan.EtcdDataDir, "member", "snap", "db")); got != "old" {
				t.Errorf("data directory holds %q", got)
			}
			if l := spoolLeft(t, k); len(l) > 0 {
				t.Errorf("spool left: %v", l)
			}
		})
	}
}

// etcdutl failing leaves the old data in place and etcd started on it.
func TestEtcdRestoreEtcdutlFails(t *testing.T) {
	k, units, _ := restoreRunner(t, errors.New("snapshot file integrity check failed"))
	snap := []byte("snapshot bytes")
	_, err := k.EtcdRestore(context.Background(), beginFor(snap), bytes.NewReader(snap))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "integrity check failed") || !strings.Contains(err.Error(), "started again on its data from before") {
		t.Fatalf("error %v", err)
	}
	want := []string{"stop kube-apiserver.service", "stop kubedos-etcd.service", "queue kubedos-etcd.service"}
	if got := units.take(); !slices.Equal(got, want) {
		t.Errorf("units: %v, want %v", got, want)
	}
	if got := readRoot(t, k, filepath.Join(kubeplan.EtcdDataDir, "member", "snap", "db")); got != "old" {
		t.Errorf("data directory holds %q, want the old data", got)
	}
	for _, p := range []string{etcdRestoredDir, EtcdPreviousDir} {
		if _, err := os.Stat(k.path(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a failed restore: %v", p, err)
		}
	}
	if readRoot(t, k, EtcdJoinFile) != `{"members":[]}` {
		t.Error("the join record of the data kept was removed")
	}
}

// A node without an etcd member, or with a restore running, refuses.
func TestEtcdRestoreRefusals(t *testing.T) {
	snap := []byte("snapshot bytes")
	w, _, _ := newTestRunner(t, planOf(t, examples.LocalHA, "w-1"))
	if _, err := w.EtcdRestore(context.Background(), beginFor(snap), bytes.NewReader(snap)); !errors.Is(err, ErrNotFound) {
		t.Errorf("worker: %v, want ErrNotFound", err)
	}
	k, units, _ := restoreRunner(t, nil)
	k.restoring.Store(true)
	if _, err := k.EtcdRestore(context.Background(), beginFor(snap), bytes.NewReader(snap)); !errors.Is(err, ErrRefused) {
		t.Errorf("second restore: %v, want ErrRefused", err)
	}
	if got := units.take(); len(got) > 0 {
		t.Errorf("units touched: %v", got)
	}
}

// Through the node API only an admin restores; the stream's bytes reach
// the member, a second description among them is refused.
func TestEtcdRestoreRoles(t *testing.T) {
	ctx := context.Background()
	k, units, _ := restoreRunner(t, nil)
	e := newNodeEnv(t, func(c *NodeAPIConfig) { c.EtcdRestore = k })
	snap := bytes.Repeat([]byte("0123456789abcdef"), api.SnapshotChunkBytes/8) // two chunks
	for _, role := range []pki.Role{pki.RoleReader, pki.RoleOperator} {
		if _, err := e.as(string(role)+"-1", role).EtcdRestore(ctx, beginFor(snap), bytes.NewReader(snap)); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", role, err)
		}
	}
	if got := units.take(); len(got) > 0 {
		t.Fatalf("a refused caller's restore touched units: %v", got)
	}
	res, err := e.as("ada", pki.RoleAdmin).EtcdRestore(ctx, beginFor(snap), bytes.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	if res.Bytes != int64(len(snap)) || readRoot(t, k, filepath.Join(kubeplan.EtcdDataDir, "member", "snap", "db")) != string(snap) {
		t.Errorf("restored %+v, data not the snapshot streamed", res)
	}
	bad := beginFor(snap)
	bad.SHA256 = strings.Repeat("0", 64)
	if _, err := e.as("ada", pki.RoleAdmin).EtcdRestore(ctx, bad, bytes.NewReader(snap)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("wrong digest: %v, want InvalidArgument", err)
	}
	audited := func(actor, outcome string) bool {
		return slices.ContainsFunc(e.auditLog(), func(r AuditRecord) bool {
			return r.Actor == actor && r.Method == "EtcdRestore" && r.Outcome == outcome
		})
	}
	if !audited("reader-1 (reader)", "denied") || !audited("ada (admin)", "ok") {
		t.Errorf("restores not audited: %+v", e.auditLog())
	}
	// A node without etcd answers NotFound.
	if _, err := newNodeEnv(t).as("ada", pki.RoleAdmin).EtcdRestore(ctx, beginFor(snap), bytes.NewReader(snap)); status.Code(err) != codes.NotFound {
		t.Errorf("no etcd: %v, want NotFound", err)
	}
}

// etcd35 is a directory holding etcd and etcdutl of etcd 3.5 or later
// (Debian trixie's etcd-server): KUBEDOS_ETCD35, or the directory of the
// etcdutl on PATH. scripts/setup.sh unpacks trixie's package into
// ~/.cache/kubedos/etcd35 when it can.
func etcd35(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBEDOS_ETCD35")
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".cache", "kubedos", "etcd35", "usr", "bin")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "etcdutl")); err != nil {
		p, err := exec.LookPath("etcdutl")
		if err != nil {
			t.Skip("no etcdutl (etcd 3.5, Debian trixie's etcd-server): set KUBEDOS_ETCD35 to a directory with etcd and etcdutl")
		}
		dir = filepath.Dir(p)
	}
	return dir
}

// TestEtcdRestoreDebianEtcdutl restores a snapshot of a running etcd with
// Debian's etcdutl and starts etcd on the result, as on a node: the key
// written before the snapshot is there, the one written after is gone,
// and the revision moved on by the bump, so watchers relist.
func TestEtcdRestoreDebianEtcdutl(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd twice")
	}
	bin := etcd35(t)
	p := planOf(t, examples.LocalHA, "cp-2")
	ports := freePorts(t, 2)
	client := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("https://127.0.0.1:%d", ports[1])
	p.EtcdMembers = []kubeplan.EtcdMember{{Name: "cp-2", PeerURL: peer}}
	k, units, _ := newTestRunner(t, p)
	k.etcdutl = func(ctx context.Context, a ...string) error {
		_, err := run(ctx, filepath.Join(bin, "etcdutl"), a...)
		return err
	}
	certPEM, keyPEM, caPEM := etcdServerCert(t, "cp-2")
	pkiFile := func(name string) string { return k.path(filepath.Join(kubeplan.PKIDir, name)) }
	for name, b := range map[string][]byte{"etcd-server.crt": certPEM, "etcd-server.key": keyPEM, "etcd-ca.crt": caPEM} {
		writeTestFile(t, k.root, filepath.Join(kubeplan.PKIDir, name), b)
	}
	crt, key, caFile := pkiFile("etcd-server.crt"), pkiFile("etcd-server.key"), pkiFile("etcd-ca.crt")
	// start runs etcd on the member's data directory until the returned
	// stop; the initial-cluster flags count only on an empty one.
	start := func() (stop func(), log *strings.Builder) {
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "etcd"), "--name", "cp-2", "--data-dir", k.path(kubeplan.EtcdDataDir),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "cp-2="+peer,
			"--client-cert-auth", "--trusted-ca-file", caFile, "--cert-file", crt, "--key-file", key,
			"--peer-trusted-ca-file", caFile, "--peer-cert-file", crt, "--peer-key-file", key)
		log = &strings.Builder{}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		stop = func() { cancel(); _ = cmd.Wait() }
		t.Cleanup(stop)
		return stop, log
	}
	ctx := context.Background()
	cl, err := k.etcdClient()
	if err != nil {
		t.Fatal(err)
	}
	waitHealthy := func(log *strings.Builder) {
		for deadline := time.Now().Add(60 * time.Second); askEtcdHealth(ctx, cl, client+"/health", "cp-2") != nil; time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("etcd never healthy:\n%s", log.String())
			}
		}
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	put := func(key, value string) {
		if err := etcdCall(ctx, cl, client, "/v3/kv/put", map[string]string{"key": b64(key), "value": b64(value)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	get := func(key string) (value string, revision int64) {
		var r struct {
			Header struct {
				Revision string `json:"revision"`
			} `json:"header"`
			Kvs []struct {
				Value string `json:"value"`
			} `json:"kvs"`
		}
		if err := etcdCall(ctx, cl, client, "/v3/kv/range", map[string]string{"key": b64(key)}, &r); err != nil {
			t.Fatal(err)
		}
		revision, _ = strconv.ParseInt(r.Header.Revision, 10, 64)
		if len(r.Kvs) == 0 {
			return "", revision
		}
		v, _ := base64.StdEncoding.DecodeString(r.Kvs[0].Value)
		return string(v), revision
	}

	stop, log := start()
	waitHealthy(log)
	put("before", "kept")
	snaps := t.TempDir()
	s, err := etcdsnap.Take(ctx, cl, []etcdsnap.Member{{Name: "cp-2", URL: client}}, snaps, 5, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	put("after", "lost")
	if v, _ := get("after"); v != "lost" {
		t.Fatalf("the write after the snapshot reads %q", v)
	}
	stop() // what the unit's stop does on a node

	f, err := os.Open(filepath.Join(snaps, s.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := k.EtcdRestore(ctx, api.EtcdRestoreBegin{Snapshot: s.Name, Bytes: s.Bytes, SHA256: s.SHA256, Token: "local-ha-restore-1"}, f)
	if err != nil {
		t.Fatal(err)
	}
	if got := units.take(); !slices.Equal(got, []string{"stop kube-apiserver.service", "stop kubedos-etcd.service", "queue kubedos-etcd.service"}) {
		t.Errorf("units: %v", got)
	}
	_, log = start() // what the unit's start does
	waitHealthy(log)
	v, rev := get("before")
	if v != "kept" {
		t.Errorf("the key written before the snapshot reads %q after the restore", v)
	}
	if v, _ := get("after"); v != "" {
		t.Errorf("the key written after the snapshot reads %q after the restore, want it gone", v)
	}
	if rev < etcdRestoreBump {
		t.Errorf("revision %d after the restore, want it bumped past %d", rev, etcdRestoreBump)
	}
	if _, err := os.Stat(filepath.Join(k.path(EtcdPreviousDir), "member", "snap", "db")); err != nil {
		t.Errorf("the data before the restore was not kept: %v", err)
	}
	t.Logf("restored %s (%d bytes) in: %s; revision after %d", s.Name, s.Bytes, strings.Join(res.Steps, "; "), rev)
}
