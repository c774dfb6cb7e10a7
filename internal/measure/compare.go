package measure

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// ErrMismatch classifies a node whose event log or PCRs differ from the
// prediction.
var ErrMismatch = errors.New("measurements differ from the prediction")

// Mismatch is one difference between a prediction and a node's measurements.
type Mismatch struct {
	PCR int `json:"pcr"`
	// Index is the position of the event among the PCR's events (0-based,
	// EV_NO_ACTION skipped), or -1 for a difference in the PCR value.
	Index int `json:"index"`
	// LogNum is the event's number in the log (see LogEvent.Num), 0 when
	// there is no log event.
	LogNum int    `json:"logNum,omitempty"`
	Want   string `json:"want"`
	Got    string `json:"got"`
}

func (m Mismatch) String() string {
	where := fmt.Sprintf("PCR %d value", m.PCR)
	if m.Index >= 0 {
		where = fmt.Sprintf("PCR %d event %d", m.PCR, m.Index)
		if m.LogNum > 0 {
			where += fmt.Sprintf(" (log event %d)", m.LogNum)
		}
	}
	return fmt.Sprintf("%s: want %s, got %s", where, m.Want, m.Got)
}

// MismatchError lists every difference found by Compare. It matches
// ErrMismatch with errors.Is.
type MismatchError struct {
	Mismatches []Mismatch
}

func (e *MismatchError) Error() string {
	lines := make([]string, len(e.Mismatches))
	for i, m := range e.Mismatches {
		lines[i] = m.String()
	}
	return fmt.Sprintf("%v (%d): %s", ErrMismatch, len(e.Mismatches), strings.Join(lines, "; "))
}

// Is makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// Compare checks a node's event log events and its quoted sha256 PCR values
// against pred, for every PCR in pred:
//   - the log's events for the PCR (EV_NO_ACTION skipped) must equal the
//     predicted events one for one, in type and digest;
//   - the log must replay to the quoted value; for PCR 11 after extending it
//     with the words of one of pred's phases, because systemd-pcrphase 252
//     extends PCR 11 without logging;
//   - the quoted value must equal the predicted value (for PCR 11, the value
//     at one of pred's phases).
//
// The PCR values must come from a verified quote. On success Compare returns
// the phase PCR 11 was quoted at. Otherwise the error is a *MismatchError
// listing every difference (or an ErrInput error for a malformed prediction).
func Compare(pred Prediction, events []LogEvent, pcrs map[int][]byte) (Phase, error) {
	if err := pred.Validate(); err != nil {
		return Phase{}, err
	}
	var ms []Mismatch
	var phase Phase
	for _, c := range pred.PCRs {
		logValue, logEvents := replayLog(events, c.Index)
		ms = append(ms, compareEvents(c, logEvents)...)

		quoted, ok := pcrs[c.Index]
		if !ok {
			ms = append(ms, Mismatch{PCR: c.Index, Index: -1, Want: fmt.Sprintf("quoted value %s", c.Value), Got: "PCR not quoted"})
			continue
		}
		if len(quoted) != DigestSize {
			ms = append(ms, Mismatch{PCR: c.Index, Index: -1, Want: fmt.Sprintf("%d-byte sha256 value", DigestSize), Got: fmt.Sprintf("%d bytes %x", len(quoted), quoted)})
			continue
		}
		phases := []PhaseValue{{Phase: PhaseStub, Value: c.Value}}
		if c.Index == PCRKernelImage && len(pred.PCR11Phases) > 0 {
			phases = pred.PCR11Phases
		}
		logOK := false
		for _, ph := range phases {
			logOK = logOK || bytes.Equal(PCR11AtPhase(logValue, ph.Words...), quoted)
		}
		if !logOK {
			ms = append(ms, Mismatch{PCR: c.Index, Index: -1,
				Want: fmt.Sprintf("event log replaying to the quoted %x%s", quoted, phaseNote(c.Index, phases)),
				Got:  fmt.Sprintf("log replay %x", logValue)})
		}
		matched := -1
		for i, ph := range phases {
			if bytes.Equal(ph.Value, quoted) {
				matched = i
				break
			}
		}
		if matched < 0 {
			ms = append(ms, Mismatch{PCR: c.Index, Index: -1, Want: wantValues(phases, c.Index), Got: fmt.Sprintf("quoted %x", quoted)})
		} else if c.Index == PCRKernelImage {
			phase = phases[matched].Phase
		}
	}
	if len(ms) > 0 {
		return Phase{}, &MismatchError{Mismatches: ms}
	}
	if phase.Name == "" {
		phase = PhaseStub
	}
	return phase, nil
}

// compareEvents lists the differences between the predicted events of one
// PCR and the log's events for it.
func compareEvents(c PCRPrediction, got []LogEvent) []Mismatch {
	var ms []Mismatch
	for i := 0; i < max(len(c.Events), len(got)); i++ {
		m := Mismatch{PCR: c.Index, Index: i, Want: "no event", Got: "no event"}
		if i < len(c.Events) {
			w := c.Events[i]
			m.Want = fmt.Sprintf("%s %s (%s)", w.Type, w.Digest, w.Description)
		}
		if i < len(got) {
			g := got[i]
			m.LogNum = g.Num
			m.Got = fmt.Sprintf("%s %s", g.Type, g.Digest)
			if i < len(c.Events) && g.Type == c.Events[i].Type && bytes.Equal(g.Digest, c.Events[i].Digest) {
				continue
			}
		}
		ms = append(ms, m)
	}
	return ms
}

func phaseNote(pcr int, phases []PhaseValue) string {
	if pcr != PCRKernelImage || len(phases) < 2 {
		return ""
	}
	names := make([]string, len(phases))
	for i, ph := range phases {
		names[i] = ph.Name
	}
	return " after the phase words of one of " + strings.Join(names, ", ")
}

func wantValues(phases []PhaseValue, pcr int) string {
	if pcr != PCRKernelImage || len(phases) < 2 {
		return phases[0].Value.String()
	}
	parts := make([]string, len(phases))
	for i, ph := range phases {
		parts[i] = fmt.Sprintf("%s (%s)", ph.Value, ph.Name)
	}
	return "one of " + strings.Join(parts, ", ")
}
