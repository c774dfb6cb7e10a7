package attest_test

import (
	"encoding/json"
	"sync"
	"testing"

	. "github.com/kubedos/kubedos/internal/attest"
)

// goodQuote is a verified enrollment of the recorded OVMF boot: the node's
// identity and evidence, and the hub's input that accepts them. Benchmarks
// and fuzz targets start from it.
type goodQuote struct {
	id     Identity
	ev     Evidence
	in     VerifyInput
	idJSON []byte
	evJSON []byte
}

var goodQuoteCache struct {
	sync.Mutex
	q *goodQuote
}

// sharedGoodQuote makes the goodQuote once per test binary (the simulator
// is closed when the first caller ends).
func sharedGoodQuote(tb testing.TB) goodQuote {
	tb.Helper()
	goodQuoteCache.Lock()
	defer goodQuoteCache.Unlock()
	if goodQuoteCache.q != nil {
		return *goodQuoteCache.q
	}
	boot := ovmfEvents(tb)
	n := bootNode(tb, seedNode, boot, boot)
	activate(tb, n)
	ev, in := quote(tb, n, protoPrediction(tb, nil))
	if _, err := VerifyEvidence(ev, in); err != nil {
		tb.Fatal(err)
	}
	q := &goodQuote{id: n.id, ev: ev, in: in}
	var err error
	if q.idJSON, err = json.Marshal(n.id); err != nil {
		tb.Fatal(err)
	}
	if q.evJSON, err = json.Marshal(ev); err != nil {
		tb.Fatal(err)
	}
	goodQuoteCache.q = q
	return *q
}
