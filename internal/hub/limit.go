package hub

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Defaults of the limits on unauthenticated callers (Options.AnonRate,
// AnonBurst). One enrollment is three calls (Begin, Activate, Enroll); the
// burst lets a whole cluster behind one NAT address (qemu's user network)
// enroll at once, the rate lets its nodes retry.
const (
	DefaultAnonRate  = 2.0 // calls per second per peer
	DefaultAnonBurst = 100
	// SummaryEvery is how often at most the audit log gets an entry about
	// one peer's refused unauthenticated calls or revoked certificates.
	SummaryEvery = time.Minute
	// maxPeers bounds the peers the limiter and the summaries track; past
	// it, new peers share one overflow entry (so memory stays bounded too).
	maxPeers = 4096
	// maxQuoted bounds an attacker-controlled string quoted in an audit
	// entry or an error.
	maxQuoted = 64
)

// overflowPeer stands for every peer past maxPeers.
const overflowPeer = "(other peers)"

type remoteKey struct{}

// WithRemote tells the hub which network peer a call comes from (the gRPC
// edge passes the TCP peer's address). Unauthenticated calls are rate-limited
// per peer and their refusals summarized per peer; a call without a remote
// comes from inside the hub's process and is not rate-limited.
func WithRemote(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, remoteKey{}, peerKey(addr))
}

func remoteOf(ctx context.Context) (string, bool) {
	r, ok := ctx.Value(remoteKey{}).(string)
	return r, ok
}

// peerKey is the rate-limit key of an address: the IP (without the port,
// which changes per connection), an IPv6 address by its /64 (what one host
// is usually given). Anything else is quoted and bounded.
func peerKey(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return quote(addr)
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// quote is s quoted with Go escapes, cut to its first maxQuoted bytes: how
// the hub writes a string an unauthenticated caller sent.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := s[:maxQuoted]
	for !utf8.ValidString(cut) && len(cut) > maxQuoted-utf8.UTFMax {
		cut = cut[:len(cut)-1]
	}
	return strconv.Quote(strings.ToValidUTF8(cut, "")) + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// limiter is a token bucket per peer: burst calls at once, refilled at rate
// per second on the hub's clock.
type limiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

// allow takes a token from peer's bucket if it has one.
func (l *limiter) allow(peer string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[peer]
	if !ok {
		if len(l.buckets) >= maxPeers {
			peer = overflowPeer
			b = l.buckets[peer]
		}
		if b == nil {
			b = &bucket{tokens: l.burst, at: now}
			l.buckets[peer] = b
		}
	}
	if dt := now.Sub(b.at).Seconds(); dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt*l.rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// prune forgets peers whose bucket is full again: they are as if new.
func (l *limiter) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}
