package hub

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkAnonymousBeginFlood is hole 3's figure: b.N anonymous Begin
// calls, refused, from 100 network peers taking turns, the hub's clock
// moving 1 ms a call (100,000 calls: 100 s), half claiming an 8 KiB name,
// half a real name with an EK nobody registered. It reports how much the
// hub state grew (state-B, the snapshot a hand-over carries) and fails past
// 1 MiB. Record: go test -run '^$' -bench AnonymousBeginFlood -benchtime 100000x ./internal/hub
func BenchmarkAnonymousBeginFlood(b *testing.B) {
	e := newEnv(b)
	var ids []TPMIdentity
	for range 16 {
		ids = append(ids, newTPM(b).identity())
	}
	var ctxs []context.Context
	for i := range 100 {
		ctxs = append(ctxs, WithRemote(context.Background(), fmt.Sprintf("198.51.100.%d:%d", i, 40000+i)))
	}
	long := strings.Repeat("A", 8<<10)
	before := stateSize(b, e.store)
	head, _ := e.store.VerifyAuditChain()
	b.ResetTimer()
	for i := range b.N {
		req := BeginRequest{Name: long, Role: "worker", Identity: ids[i%len(ids)]}
		if i%2 == 1 {
			req.Name = "w-1"
		}
		if _, err := e.hub.BeginEnrollment(ctxs[i%len(ctxs)], req); err == nil {
			b.Fatal("an unregistered EK began a session")
		}
		e.clock.Advance(time.Millisecond)
		if i%60000 == 59999 {
			if _, err := e.hub.Prune(context.Background()); err != nil { // what hubhost does each minute
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	e.clock.Advance(SummaryEvery)
	if _, err := e.hub.Prune(context.Background()); err != nil {
		b.Fatal(err)
	}
	grown := stateSize(b, e.store) - before
	after, _ := e.store.VerifyAuditChain()
	c := e.hub.Counts()
	b.ReportMetric(float64(grown), "state-B")
	b.ReportMetric(float64(after.Seq-head.Seq), "audit-entries")
	b.ReportMetric(float64(c.RateLimited), "rate-limited")
	if grown > 1<<20 {
		b.Errorf("%d anonymous Begin calls grew the hub state by %d bytes, more than 1 MiB", b.N, grown)
	}
}
