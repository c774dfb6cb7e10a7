package etcdsnap

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// streamOf is what etcd's gateway answers a snapshot call with: the data
// with its SHA-256 appended, in base64 chunks, one JSON object per line.
func streamOf(data []byte, corrupt bool) string {
	sum := sha256.Sum256(data)
	full := append(append([]byte{}, data...), sum[:]...)
	if corrupt {
		full[3] ^= 0xff
	}
	var b strings.Builder
	for i := 0; i < len(full); i += 7 {
		end := min(i+7, len(full))
		fmt.Fprintf(&b, `{"result":{"remaining_bytes":"%d","blob":"%s"}}`+"\n", len(full)-end, base64.StdEncoding.EncodeToString(full[i:end]))
	}
	return b.String()
}

// A snapshot is kept only whole and checked; the next member is asked
// when one fails; only the newest are kept.
func TestTake(t *testing.T) {
	data := []byte("bbolt pages of the cluster's keys")
	var corrupt bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v3/maintenance/snapshot" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, streamOf(data, corrupt))
	}))
	defer srv.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"etcdserver: no leader"}`, http.StatusServiceUnavailable)
	}))
	defer down.Close()

	dir := t.TempDir()
	t0 := time.Date(2026, 12, 6, 15, 0, 0, 0, time.UTC)
	members := []Member{{"cp-1", down.URL}, {"cp-2", srv.URL}}
	for i := range 4 {
		s, err := Take(context.Background(), srv.Client(), members, dir, 3, t0.Add(time.Duration(i)*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if s.Member != "cp-2" || s.Bytes != int64(len(data)+32) {
			t.Errorf("snapshot %+v", s)
		}
	}
	got, err := List(dir)
	if err != nil || len(got) != 3 || got[0].Name != "etcd-20261206T180000Z-cp-2.db" || got[2].Name != "etcd-20261206T160000Z-cp-2.db" {
		t.Fatalf("kept %+v %v, want the newest three, newest first", got, err)
	}
	want := sha256.Sum256(append(append([]byte{}, data...), func() []byte { s := sha256.Sum256(data); return s[:] }()...))
	if got[0].SHA256 != fmt.Sprintf("%x", want) {
		t.Errorf("digest %s", got[0].SHA256)
	}

	corrupt = true
	if _, err := Take(context.Background(), srv.Client(), members, dir, 3, t0.Add(9*time.Hour)); err == nil || !strings.Contains(err.Error(), "does not match") || !strings.Contains(err.Error(), "cp-1") {
		t.Fatalf("a corrupted stream: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), "T09") || strings.Contains(e.Name(), ".tmp") || strings.Contains(e.Name(), "T000000Z") {
			t.Errorf("left %s behind", e.Name())
		}
	}
	if n, _ := List(dir); len(n) != 3 {
		t.Errorf("a failed snapshot changed what is kept: %+v", n)
	}
	if _, err := Take(context.Background(), srv.Client(), []Member{{"cp 1; rm", srv.URL}}, dir, 3, t0); err == nil {
		t.Error("a member name outside the file name's alphabet was taken")
	}
}

// TestTakeFromEtcd asks Debian's etcd (apt-get install etcd-server) for a
// snapshot after writing keys: the stream decodes, its appended hash
// checks, and its size is the backend's.
func TestTakeFromEtcd(t *testing.T) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (apt-get install etcd-server)")
	}
	if testing.Short() {
		t.Skip("starts etcd")
	}
	ports := make([]int, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--name", "cp-1", "--data-dir", t.TempDir(), "--listen-client-urls", client,
		"--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "cp-1="+peer)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	up := false
	for deadline := time.Now().Add(30 * time.Second); !up && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if r, err := http.Get(client + "/health"); err == nil {
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			up = strings.Contains(string(b), `"true"`)
		}
	}
	if !up {
		t.Fatalf("etcd never healthy:\n%s", log.String())
	}
	var put struct {
		Header struct {
			Revision int64 `json:"revision,string"`
		} `json:"header"`
	}
	for i := range 50 {
		body := fmt.Sprintf(`{"key":"%s","value":"%s"}`, base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "/k/%d", i)),
			base64.StdEncoding.EncodeToString([]byte(strings.Repeat("v", 1000))))
		r, err := http.Post(client+"/v3/kv/put", "application/json", strings.NewReader(body))
		if err != nil || r.StatusCode != http.StatusOK {
			t.Fatalf("put: %v %v", err, r)
		}
		if err := json.NewDecoder(r.Body).Decode(&put); err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
	}
	dir := t.TempDir()
	s, err := Take(ctx, http.DefaultClient, []Member{{"cp-1", client}}, dir, 2, time.Now())
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if s.Bytes < 50*1000 {
		t.Errorf("snapshot of %d bytes for 50 kB of values", s.Bytes)
	}
	if fi, err := os.Stat(filepath.Join(dir, s.Name)); err != nil || fi.Size() != s.Bytes || fi.Mode().Perm() != 0o600 {
		t.Errorf("kept %v %v", fi, err)
	}
	// The revision read from the file is the last write's, as etcd said.
	if s.Revision != put.Header.Revision || put.Header.Revision < 50 {
		t.Errorf("snapshot at revision %d, the last put's was %d", s.Revision, put.Header.Revision)
	}
	if l, err := List(dir); err != nil || len(l) != 1 || l[0].Revision != s.Revision {
		t.Errorf("listed %+v %v, want revision %d", l, err, s.Revision)
	}
	t.Logf("snapshot %s: %d bytes, sha256 %s, revision %d", s.Name, s.Bytes, s.SHA256, s.Revision)
}
