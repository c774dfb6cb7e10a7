package hub

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// summaries collapse a stream of like audit events (refused unauthenticated
// calls, calls with revoked certificates) into at most one audit entry per
// peer per SummaryEvery: the first event about a quiet peer is written at
// once, with its own detail; later ones are only counted, and the count is
// written by the next event after SummaryEvery, or by flush. So a flood of
// calls grows the audit log by the number of peers per minute, not by the
// number of calls.
type summaries struct {
	action string // of the flushed summary entries
	mu     sync.Mutex
	peers  map[string]*tally
}

type tally struct {
	written time.Time      // when an entry about the peer was last written
	since   time.Time      // the first event counted since
	n       int            // events counted since written
	by      map[string]int // of those, by action/check (a small fixed set)
	last    string         // the newest counted event's detail
}

// maxKinds bounds tally.by: the kinds are the hub's own names, but a
// verifier's check name reaches it too.
const maxKinds = 32

func newSummaries(action string) *summaries {
	return &summaries{action: action, peers: map[string]*tally{}}
}

// note records event e (of kind what) about peer and says whether to write
// it now: yes when nothing about peer was written for SummaryEvery, and
// then e carries the count of the events it stands after.
func (s *summaries) note(peer, what string, e AuditEntry, now time.Time) (AuditEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.peers[peer]
	if !ok {
		if len(s.peers) >= maxPeers {
			peer = overflowPeer
			t = s.peers[peer]
		}
		if t == nil {
			t = &tally{}
			s.peers[peer] = t
		}
	}
	if !t.written.IsZero() && now.Sub(t.written) < SummaryEvery {
		if t.n == 0 {
			t.since = now
		}
		t.n++
		if _, ok := t.by[what]; ok || len(t.by) < maxKinds {
			if t.by == nil {
				t.by = map[string]int{}
			}
			t.by[what]++
		}
		t.last = e.Detail
		return AuditEntry{}, false
	}
	e.Detail += fmt.Sprintf(" (peer %s)", peer)
	if t.n > 0 {
		e.Detail += "; before it " + t.text()
	}
	*t = tally{written: now}
	return e, true
}

// flush returns a summary entry for each peer with events counted and
// nothing written for SummaryEvery, and forgets peers quiet that long.
func (s *summaries) flush(now time.Time) []AuditEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []AuditEntry
	for _, peer := range slices.Sorted(maps.Keys(s.peers)) {
		t := s.peers[peer]
		if now.Sub(t.written) < SummaryEvery {
			continue
		}
		if t.n == 0 {
			delete(s.peers, peer)
			continue
		}
		out = append(out, AuditEntry{Time: now, Actor: "peer:" + peer, Action: s.action, Target: peer,
			Outcome: OutcomeRefused, Detail: t.text()})
		*t = tally{written: now}
	}
	return out
}

// text says what was counted: "12 more since T (enroll.begin/ek-policy 2,
// rate-limit 10); last: …".
func (t *tally) text() string {
	var kinds []string
	for _, k := range slices.Sorted(maps.Keys(t.by)) {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, t.by[k]))
	}
	return fmt.Sprintf("%d more since %s (%s); last: %s", t.n, stamp(t.since), strings.Join(kinds, ", "), t.last)
}
