package measure

import (
	"crypto"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-attestation/attest"
)

// ErrEventLog classifies event logs that cannot be parsed or do not replay to
// the quoted PCR values.
var ErrEventLog = errors.New("event log")

// LogEvent is one event of a TCG2 event log, with its sha256 digest. Its
// fields are untrusted until the log has been replayed against PCR values
// from a verified quote.
type LogEvent struct {
	// Num is the event's number in the log, counting the Spec ID event as
	// 0, as tpm2_eventlog numbers them.
	Num    int    `json:"num"`
	PCR    int    `json:"pcr"`
	Type   string `json:"type"`
	Digest Digest `json:"digest"`
	Data   []byte `json:"data,omitempty"`
}

// EventLog is a parsed crypto-agile (TCG2) event log.
type EventLog struct {
	log    *attest.EventLog
	events []LogEvent
}

// ParseEventLog parses a TCG2 crypto-agile event log as found in
// /sys/kernel/security/tpm0/binary_bios_measurements, with go-attestation.
// Every measuring event must carry a sha256 digest.
func ParseEventLog(raw []byte) (*EventLog, error) {
	el, err := attest.ParseEventLog(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: parse: %v", ErrEventLog, err)
	}
	if !slices.Contains(el.Algs, attest.HashSHA256) {
		return nil, fmt.Errorf("%w: no sha256 bank (log algorithms %v)", ErrEventLog, el.Algs)
	}
	l := &EventLog{log: el}
	for i, e := range el.Events(attest.HashSHA256) {
		le := LogEvent{Num: i + 1, PCR: e.Index, Type: e.Type.String(), Digest: Digest(e.Digest), Data: e.Data}
		if le.Type != EvNoAction && len(le.Digest) != DigestSize {
			return nil, fmt.Errorf("%w: event %d (PCR %d, %s) has no sha256 digest", ErrEventLog, le.Num, le.PCR, le.Type)
		}
		l.events = append(l.events, le)
	}
	return l, nil
}

// Events returns a copy of the log's events, unverified, in log order.
func (l *EventLog) Events() []LogEvent {
	out := make([]LogEvent, len(l.events))
	for i, e := range l.events {
		e.Digest = slices.Clone(e.Digest)
		e.Data = slices.Clone(e.Data)
		out[i] = e
	}
	return out
}

// Verify replays the log with go-attestation against the given sha256 PCR
// values (from a verified quote), every one of which must be reproduced
// exactly. A PCR with no event in the log is not checked (the kernel extends
// PCR 10 for IMA without a firmware event). Leave out PCR 11 once
// systemd-pcrphase may have extended it: those extends are not logged by
// systemd 252; Compare accounts for them.
func (l *EventLog) Verify(pcrs map[int][]byte) error {
	var in []attest.PCR
	for _, i := range sortedKeys(pcrs) {
		if len(pcrs[i]) != DigestSize {
			return fmt.Errorf("%w: quoted PCR %d has %d bytes, want %d", ErrInput, i, len(pcrs[i]), DigestSize)
		}
		in = append(in, attest.PCR{Index: i, Digest: pcrs[i], DigestAlg: crypto.SHA256})
	}
	if _, err := l.log.Verify(in); err != nil {
		var re attest.ReplayError
		if !errors.As(err, &re) {
			return fmt.Errorf("%w: replay: %v", ErrEventLog, err)
		}
		var lines []string
		for _, i := range re.InvalidPCRs { // diagnostic replay; ignores a PCR 0 StartupLocality event
			got, _ := replayLog(l.events, i)
			lines = append(lines, fmt.Sprintf("PCR %d: quoted %x, log replays to %x", i, pcrs[i], got))
		}
		return fmt.Errorf("%w: does not replay to the quoted PCRs: %s", ErrEventLog, strings.Join(lines, "; "))
	}
	return nil
}

// replayLog replays the sha256 digests of the log events for pcr, skipping
// EV_NO_ACTION, and returns the value and the events used.
func replayLog(events []LogEvent, pcr int) ([]byte, []LogEvent) {
	v := make([]byte, DigestSize)
	var used []LogEvent
	for _, e := range events {
		if e.PCR != pcr || e.Type == EvNoAction {
			continue
		}
		v = Extend(v, e.Digest)
		used = append(used, e)
	}
	return v, used
}

func sortedKeys(m map[int][]byte) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
