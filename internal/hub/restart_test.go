package hub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
)

// N nodes enroll concurrently while the hub restarts (its store closed and
// reopened) in the middle. Like a real node, each retries from a fresh
// session when the hub goes away. Afterwards nothing is lost and nothing is
// half-enrolled: every node is enrolled once, with the certificate it
// received, its serial and an audit entry; every other session ended
// without effect or just expires.
func TestConcurrentEnrollmentsWithRestart(t *testing.T) {
	const N = 24
	e := newEnv(t)
	ctx := context.Background()
	nodes := make([]*node, N)
	for i := range nodes {
		name := fmt.Sprintf("n-%02d", i)
		e.policy[name] = "worker"
		nodes[i] = newNode(t, name, "worker")
		e.register(nodes[i])
	}
	var current atomic.Pointer[Hub]
	current.Store(e.hub)

	// Half the nodes stop between their nonce and their quote on their first
	// attempt and go on only after the restart: a quarter quote to the old
	// hub (closed: they start over), a quarter carry their session over to
	// the new one. The other half race the restart.
	var (
		mu        sync.Mutex
		certs     = map[string]string{} // node → serial it received
		retries   atomic.Int64
		parked    sync.WaitGroup
		restarted = make(chan struct{})
		wg        sync.WaitGroup
	)
	parked.Add(N / 2)
	for i, n := range nodes {
		wg.Go(func() {
			for attempt := 0; ; attempt++ {
				if attempt > 1000 {
					t.Errorf("%s: gave up after %d attempts", n.name, attempt)
					return
				}
				s := steps{}
				if i%2 == 0 && attempt == 0 {
					s.beforeEnroll = func() {
						parked.Done()
						<-restarted
					}
					if i%4 == 0 {
						s.enrollVia = current.Load
					}
				}
				got, err := enroll(ctx, t, current.Load(), n, s)
				if err == nil {
					mu.Lock()
					certs[n.name] = pki.SerialString(got.Cert.SerialNumber)
					mu.Unlock()
					return
				}
				if !errors.Is(err, ErrClosed) {
					t.Errorf("%s: %v", n.name, err)
					return
				}
				retries.Add(1)
				time.Sleep(time.Millisecond)
			}
		})
	}
	parked.Wait()
	// The restart: transactions in flight finish, later ones fail with
	// ErrClosed until the new hub is in place.
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := Open(e.path)
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	e.newHub()
	current.Store(e.hub)
	close(restarted)
	wg.Wait()
	if retries.Load() < N/4 {
		t.Errorf("only %d attempts hit the restart, want at least %d", retries.Load(), N/4)
	}
	if t.Failed() {
		return
	}
	t.Logf("%d nodes enrolled, %d attempts retried after the restart", len(certs), retries.Load())

	// And once more, to read what is on disk.
	e.restart()
	head, err := e.store.VerifyAuditChain()
	if err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	all, err := e.store.Audit(1, MaxAuditPage)
	if err != nil || uint64(len(all)) != head.Seq {
		t.Fatalf("audit: %d entries, head %d, %v", len(all), head.Seq, err)
	}
	enrollEntries := map[string][]AuditEntry{}
	for _, a := range all {
		if a.Action == ActionEnroll {
			if a.Outcome != OutcomeOK {
				t.Errorf("enroll entry %+v", a)
			}
			enrollEntries[a.Target] = append(enrollEntries[a.Target], a)
		}
	}
	for _, n := range nodes {
		got, err := e.store.Node(n.name)
		if err != nil {
			t.Errorf("%s lost: %v", n.name, err)
			continue
		}
		serial := certs[n.name]
		if got.State != StateEnrolled || got.CertSerial != serial || got.EKHash != n.tpm.ekHash() ||
			len(got.Certs) != 1 || got.Certs[0].Serial != serial {
			t.Errorf("%s: %+v, want enrolled with serial %s", n.name, got, serial)
		}
		if es := enrollEntries[n.name]; len(es) != 1 || !strings.Contains(es[0].Detail, serial) {
			t.Errorf("%s: enroll audit entries %+v, want one naming %s", n.name, es, serial)
		}
	}
	sessions, err := e.store.Sessions()
	if err != nil {
		t.Fatal(err)
	}
	done, dangling := 0, 0
	later := e.clock.Now().Add(DefaultSessionTTL)
	for _, s := range sessions {
		switch {
		case s.Done && s.Outcome == string(StateEnrolled):
			done++
			if !strings.Contains(enrollEntries[s.Name][0].Detail, s.ID) {
				t.Errorf("session %s ended enrolled but %s was enrolled by another", s.ID, s.Name)
			}
		case s.Done:
			t.Errorf("session %s ended %s", s.ID, s.Outcome)
		case !s.Expired(later):
			t.Errorf("session %s neither completed nor expiring", s.ID)
		default:
			dangling++
		}
	}
	if dangling < N/4 {
		t.Errorf("%d sessions left by the restart, want at least the %d quotes sent to the closed hub", dangling, N/4)
	}
	if done != N {
		t.Errorf("%d sessions completed, want %d", done, N)
	}
}
