package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/errdefs"
)

func stateSize(t testing.TB, st *Store) int64 {
	t.Helper()
	n, err := st.Snapshot(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Hole 3: anonymous Begin calls, each refused, must not grow the hub state
// by what they send (before the fix, 500 such calls grew it by 2 MiB: each
// refusal was audited with an 8 KiB claimed name clipped to 4 KiB).
func TestAttackAnonymousBeginFlood(t *testing.T) {
	for _, remote := range []string{"", "203.0.113.7:40000"} {
		t.Run("remote="+remote, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			if remote != "" {
				ctx = WithRemote(ctx, remote)
			}
			before := stateSize(t, e.store)
			head, _ := e.store.VerifyAuditChain()
			const calls = 500
			long := strings.Repeat("A\x00", 4<<10)
			for i := range calls {
				req := BeginRequest{Name: long, Role: "worker", Identity: newTPM(t).identity()}
				if i%2 == 1 {
					req.Name = "w-1" // a real name, an EK nobody registered
				}
				if _, err := e.hub.BeginEnrollment(ctx, req); err == nil {
					t.Fatal("an unregistered EK began a session")
				}
				e.clock.Advance(10 * time.Millisecond)
			}
			grown := stateSize(t, e.store) - before
			after, _ := e.store.VerifyAuditChain()
			t.Logf("%d anonymous Begin calls: state grew by %d bytes, %d audit entries", calls, grown, after.Seq-head.Seq)
			if grown > 32<<10 || after.Seq-head.Seq > 5 {
				t.Errorf("%d refused calls grew the state by %d bytes and %d audit entries", calls, grown, after.Seq-head.Seq)
			}
			entries, _ := e.store.Audit(head.Seq+1, 0)
			for _, a := range entries {
				if len(a.Detail) > 1024 || strings.Contains(a.Detail, strings.Repeat("A", 65)) {
					t.Errorf("audit detail of %d bytes quotes the claim whole: %.200s", len(a.Detail), a.Detail)
				}
			}
			// A minute on, the count of what was not written is.
			e.clock.Advance(SummaryEvery)
			if _, err := e.hub.Prune(ctx); err != nil {
				t.Fatal(err)
			}
			last := e.lastAudit()
			if last.Action != ActionAnonSummary || !strings.Contains(last.Detail, "more since") || !strings.Contains(last.Detail, "enroll.begin/ek-policy") {
				t.Errorf("summary entry %+v", last)
			}
			c := e.hub.Counts()
			if c.Anonymous+c.RateLimited != calls {
				t.Errorf("counts %+v, want %d refusals in all", c, calls)
			}
			if (remote != "") != (c.RateLimited > 0) {
				t.Errorf("counts %+v: a network peer is rate-limited, the hub's own process is not", c)
			}
		})
	}
}

func TestRateLimitPerPeer(t *testing.T) {
	e := newEnv(t)
	h, err := New(Options{Store: e.store, CA: e.ca, Verifier: e.ver, Policy: e.policy, Now: e.clock.Now, AnonRate: 1, AnonBurst: 3})
	if err != nil {
		t.Fatal(err)
	}
	call := func(peer string) error {
		ctx := context.Background()
		if peer != "" {
			ctx = WithRemote(ctx, peer)
		}
		_, err := h.BeginEnrollment(ctx, BeginRequest{Name: "w-1", Role: "worker", Identity: newTPM(t).identity()})
		return err
	}
	tests := []struct {
		peer    string
		advance time.Duration
		limited bool
	}{
		{"192.0.2.1:1000", 0, false},
		{"192.0.2.1:1001", 0, false}, // another port, the same peer
		{"192.0.2.1:1002", 0, false},
		{"192.0.2.1:1003", 0, true}, // burst of 3 spent
		{"192.0.2.2:1000", 0, false},
		{"[2001:db8::1]:1", 0, false},
		{"[2001:db8::2]:1", 0, false}, // the same /64
		{"[2001:db8::3]:1", 0, false},
		{"[2001:db8::4]:1", 0, true},
		{"[2001:db8:0:1::1]:1", 0, false}, // another /64
		{"", 0, false},                    // the hub's own process
		{"192.0.2.1:1004", 0, true},
		{"192.0.2.1:1005", time.Second, false}, // one token a second
		{"192.0.2.1:1006", 0, true},
	}
	for i, tt := range tests {
		e.clock.Advance(tt.advance)
		err := call(tt.peer)
		if got := errors.Is(err, ErrRateLimited); got != tt.limited {
			t.Errorf("call %d from %q: %v, want rate-limited %v", i, tt.peer, err, tt.limited)
		}
		if tt.limited && !errors.Is(err, errdefs.ErrExhausted) {
			t.Errorf("call %d: %v is not errdefs.ErrExhausted", i, err)
		}
	}
	if c := h.Counts(); c.RateLimited != 4 {
		t.Errorf("rate-limited count %d, want 4", c.RateLimited)
	}
}

func TestPeerTrackingBounded(t *testing.T) {
	l := newLimiter(1, 1)
	for i := range maxPeers + 100 {
		l.allow(fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), t0)
	}
	if len(l.buckets) > maxPeers+1 {
		t.Errorf("%d buckets for %d peers, want at most %d", len(l.buckets), maxPeers+100, maxPeers+1)
	}
	l.prune(t0.Add(time.Minute))
	if len(l.buckets) != 0 {
		t.Errorf("%d buckets left after they refilled", len(l.buckets))
	}
}

func TestSummaryAtMostOncePerMinute(t *testing.T) {
	s := newSummaries(ActionAnonSummary)
	var written []AuditEntry
	note := func(peer string, at time.Duration) {
		if e, ok := s.note(peer, "enroll.begin/request", AuditEntry{Detail: "refused"}, t0.Add(at)); ok {
			written = append(written, e)
		}
	}
	for i := range 100 {
		note("a", time.Duration(i)*100*time.Millisecond) // 10 s of calls
	}
	note("b", 0)
	if len(written) != 2 {
		t.Fatalf("%d entries written for 100 calls from a and 1 from b in 10 s, want 2", len(written))
	}
	if got := s.flush(t0.Add(30 * time.Second)); len(got) != 0 {
		t.Errorf("flush after 30 s wrote %v", got)
	}
	got := s.flush(t0.Add(SummaryEvery))
	if len(got) != 1 || got[0].Target != "a" || !strings.HasPrefix(got[0].Detail, "99 more since") {
		t.Errorf("flush after a minute = %+v, want a's 99", got)
	}
	if got := s.flush(t0.Add(3 * SummaryEvery)); len(got) != 0 || len(s.peers) != 0 {
		t.Errorf("quiet peers not forgotten: %v, %d left", got, len(s.peers))
	}
}

func TestQuoteBounded(t *testing.T) {
	tests := []struct{ in, want string }{
		{"w-1", `"w-1"`},
		{"a\nb", `"a\nb"`},
		{strings.Repeat("x", 100), `"` + strings.Repeat("x", 64) + `"…(100 bytes)`},
		{strings.Repeat("é", 40), `"` + strings.Repeat("é", 32) + `"…(80 bytes)`},
	}
	for _, tt := range tests {
		if got := quote(tt.in); got != tt.want {
			t.Errorf("quote(%.20q…) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// Fields past their bound are refused before anything is stored.
func TestEdgeBounds(t *testing.T) {
	e := newEnv(t)
	n := newNode(t, "w-1", "worker")
	e.register(n)
	ctx := context.Background()
	id := n.tpm.identity()
	id.EKCertificate = make([]byte, maxCertBytes+1)
	if _, err := e.hub.BeginEnrollment(ctx, BeginRequest{Name: "w-1", Role: "worker", Identity: id}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "EK certificate") {
		t.Errorf("oversized EK certificate: %v", err)
	}
	if _, err := e.hub.CompleteActivation(ctx, strings.Repeat("z", 1<<20), nil); !errors.Is(err, ErrNoSession) || len(err.Error()) > 512 {
		t.Errorf("1 MiB session id: %.300v", err)
	}
	_, err := e.hub.Enroll(ctx, EnrollRequest{Session: strings.Repeat("0", 32), BuildID: strings.Repeat("b", 200)})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "build-id") || len(err.Error()) > 512 {
		t.Errorf("200-byte build-id: %v", err)
	}
}
