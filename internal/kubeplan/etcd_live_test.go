package kubeplan

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestEtcdRejoinKeepsLeader runs three etcd members (Debian's etcd-server)
// on loopback with the election flags kubeplan gives etcd, cuts one
// follower off from the others' messages for three election timeouts and
// lets it back in: the leader and the term must not change. Without
// pre-vote the cut-off member campaigns at higher terms, and when it
// hears the leader again its higher term makes the leader step down: an
// election during which writes through every API server fail, as HA drill
// writes did while powered-off nodes came back. About 30 s.
func TestEtcdRejoinKeepsLeader(t *testing.T) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (apt-get install etcd-server)")
	}
	if testing.Short() {
		t.Skip("runs three etcd members for about 30 s")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	const n = 3
	ports := freePorts(t, 3*n) // client, peer, and the peer port the others dial (a cuttable proxy)
	client := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", ports[i]) }
	peer := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[n+i]) }
	dialed := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[2*n+i]) }

	part := newPartition()
	var initial []string
	for i := range n {
		part.listen(t, i, dialed(i), peer(i))
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, dialed(i)))
	}
	var wg sync.WaitGroup
	for i := range n {
		args := append([]string{"--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(dir, fmt.Sprintf("m%d", i)),
			"--listen-client-urls", client(i), "--advertise-client-urls", client(i),
			"--listen-peer-urls", "http://" + peer(i), "--initial-advertise-peer-urls", "http://" + dialed(i),
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "rejoin"}, etcdRaftArgs()...)
		cmd := exec.CommandContext(ctx, bin, args...)
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = cmd.Wait() }()
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("m%d's log (last 3000 bytes):\n%s", i, tail(log.String(), 3000))
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })

	for i := range n {
		waitFor(t, 60*time.Second, fmt.Sprintf("m%d healthy", i), func() error { return etcdHealthy(client(i)) })
	}
	before, err := etcdStatusOf(client(0))
	if err != nil || before.Leader == "" || before.Leader == "0" {
		t.Fatalf("m0's status before: %+v %v", before, err)
	}
	victim, victimID := -1, ""
	for i := range n {
		st, err := etcdStatusOf(client(i))
		if err != nil {
			t.Fatal(err)
		}
		if st.Header.MemberID != before.Leader {
			victim, victimID = i, st.Header.MemberID
			break
		}
	}
	cut := 3 * EtcdElectionMS * time.Millisecond
	t.Logf("leader %s at term %s; cutting m%d off for %v", before.Leader, before.RaftTerm, victim, cut)
	part.cut(t, victim, victimID)
	time.Sleep(cut)
	if st, err := etcdStatusOf(client(victim)); err == nil {
		t.Logf("m%d after %v cut off: term %s (pre-vote keeps it; without, it campaigns at higher terms)", victim, cut, st.RaftTerm)
	} else {
		t.Logf("m%d after %v cut off: %v", victim, cut, err)
	}
	part.cut(t, -1, "")
	waitFor(t, 60*time.Second, fmt.Sprintf("m%d healthy again", victim), func() error { return etcdHealthy(client(victim)) })
	// Give a disruption the time to happen: the leader's next heartbeats
	// reach the member and its answers reach the leader.
	time.Sleep(2 * EtcdElectionMS * time.Millisecond)
	after, err := etcdStatusOf(client(0))
	if err != nil {
		t.Fatal(err)
	}
	if after.Leader != before.Leader || after.RaftTerm != before.RaftTerm {
		t.Errorf("m%d's return changed the leader %s → %s, term %s → %s: it disrupted a working cluster",
			victim, before.Leader, after.Leader, before.RaftTerm, after.RaftTerm)
	}
}

type etcdStatus struct {
	Header struct {
		MemberID string `json:"member_id"`
	} `json:"header"`
	Leader   string `json:"leader"`
	RaftTerm string `json:"raftTerm"`
}

// etcdStatusOf asks a member through etcd's JSON gateway (no etcdctl in
// bookworm's etcd-server).
func etcdStatusOf(base string) (etcdStatus, error) {
	var st etcdStatus
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post(base+"/v3/maintenance/status", "application/json", strings.NewReader("{}"))
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return st, err
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status %s: %s", resp.Status, b)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("status %s: %w", b, err)
	}
	if _, err := strconv.ParseUint(st.RaftTerm, 10, 64); err != nil {
		return st, fmt.Errorf("status without a term: %s", b)
	}
	return st, nil
}

func etcdHealthy(base string) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<12))
	var h struct{ Health string }
	if json.Unmarshal(b, &h) != nil || h.Health != "true" {
		return fmt.Errorf("/health: %s", b)
	}
	return nil
}

// partition sits in front of every member's peer port (etcd's peers reach
// each other only through it) and cuts one member off both ways: nothing
// reaches its peer port, and nothing it sends reaches another's (etcd's
// peer requests name their sender in X-Server-From; a member receives a
// peer's messages on a connection it dialed itself, so both are needed).
type partition struct {
	mu     sync.Mutex
	victim int    // -1: no one cut off
	from   string // the victim's member ID as etcd writes it in X-Server-From
	conns  map[net.Conn]proxied
}

type proxied struct {
	to   int    // the member the connection reaches
	from string // X-Server-From of its first request
}

func newPartition() *partition { return &partition{victim: -1, conns: map[net.Conn]proxied{}} }

func (p *partition) blocked(c proxied) bool {
	return p.victim >= 0 && (c.to == p.victim || c.from == p.from)
}

// cut cuts member i (its ID from etcd's status, in decimal) off, closing
// the connections it has; i < 0 lets everyone through again.
func (p *partition) cut(t *testing.T, i int, id string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.victim, p.from = i, ""
	if i < 0 {
		return
	}
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		t.Fatalf("member id %q: %v", id, err)
	}
	p.from = strconv.FormatUint(n, 16)
	for c, pc := range p.conns {
		if p.blocked(pc) {
			c.Close()
		}
	}
}

// listen forwards listen to member i's peer port at to.
func (p *partition) listen(t *testing.T, i int, listen, to string) {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go p.forward(in, i, to)
		}
	}()
}

func (p *partition) forward(in net.Conn, i int, to string) {
	defer in.Close()
	// The request's head names its sender; peer requests are small.
	br := bufio.NewReaderSize(in, 16<<10)
	var head bytes.Buffer
	pc := proxied{to: i}
	for head.Len() < 16<<10 {
		line, err := br.ReadString('\n')
		head.WriteString(line)
		if err != nil || line == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "X-Server-From") {
			pc.from = strings.TrimSpace(v)
		}
	}
	p.mu.Lock()
	if p.blocked(pc) {
		p.mu.Unlock()
		return
	}
	out, err := net.Dial("tcp", to)
	if err != nil {
		p.mu.Unlock()
		return
	}
	defer out.Close()
	p.conns[in], p.conns[out] = pc, pc
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, in)
		delete(p.conns, out)
		p.mu.Unlock()
	}()
	go func() {
		_, _ = out.Write(head.Bytes())
		_, _ = io.Copy(out, br)
		out.Close()
	}()
	_, _ = io.Copy(in, out)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
