package measure

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseEventLog(t *testing.T) {
	p := loadProto(t)
	log, err := ParseEventLog(p.file(t, "eventlog.bin"))
	if err != nil {
		t.Fatal(err)
	}
	evs := log.Events()
	// tpm2_eventlog numbers the same log 0 (Spec ID) to 39.
	if len(evs) != 39 || evs[0].Num != 1 || evs[len(evs)-1].Num != 39 {
		t.Fatalf("%d events, first %d last %d", len(evs), evs[0].Num, evs[len(evs)-1].Num)
	}
	e := evs[27] // tpm2_eventlog EventNum 28: the stub's first measurement
	if e.Num != 28 || e.PCR != 11 || e.Type != EvIPL || e.Digest.String() != "0da293e37ad5511c59be47993769aacb91b243f7d010288e118dc90e95aaef5a" {
		t.Errorf("event 28 = %+v", e)
	}
	before := e.Digest.String()
	evs[27].Digest[0] ^= 1 // Events returns a deep copy
	if got := log.Events()[27].Digest.String(); got != before {
		t.Errorf("changing a returned event changed the log: %s", got)
	}

	if _, err := ParseEventLog(nil); !errors.Is(err, ErrEventLog) {
		t.Errorf("empty log: %v", err)
	}
	if _, err := ParseEventLog(p.file(t, "eventlog.bin")[:500]); !errors.Is(err, ErrEventLog) {
		t.Errorf("truncated log: %v", err)
	}
}

// The log replays, with go-attestation, to every PCR the guest read.
func TestEventLogVerify(t *testing.T) {
	p := loadProto(t)
	log, err := ParseEventLog(p.file(t, "eventlog.bin"))
	if err != nil {
		t.Fatal(err)
	}
	pcrs := p.pcrs(t)
	if err := log.Verify(pcrs); err != nil {
		t.Fatal(err)
	}
	pcrs[7] = bytes.Clone(pcrs[7])
	pcrs[7][31] ^= 1
	err = log.Verify(pcrs)
	if !errors.Is(err, ErrEventLog) || !strings.Contains(err.Error(), "PCR 7: quoted") ||
		!strings.Contains(err.Error(), "2df422f9e2803453d026d2ffd2331883090324a2075c7be5f50aa616e4f88904") {
		t.Errorf("tampered PCR 7: %v", err)
	}
	if err := log.Verify(map[int][]byte{4: {1, 2}}); !errors.Is(err, ErrInput) {
		t.Errorf("short PCR value: %v", err)
	}
}

func TestCompare(t *testing.T) {
	p := loadProto(t)
	pred, err := Predict(p.inputs(t, p.file(t, "cmdline.txt"), p.file(t, "osrel.txt")))
	if err != nil {
		t.Fatal(err)
	}
	log, err := ParseEventLog(p.file(t, "eventlog.bin"))
	if err != nil {
		t.Fatal(err)
	}
	events := log.Events()
	stub := p.Phases["stub"]

	with := func(pcr int, v []byte) map[int][]byte {
		m := p.pcrs(t)
		m[pcr] = v
		return m
	}
	t.Run("phases", func(t *testing.T) {
		for _, ph := range BootPhases {
			got, err := Compare(pred, events, with(11, PCR11AtPhase(stub, ph.Words...)))
			if err != nil || got.Name != ph.Name {
				t.Errorf("quoted at %s: phase %q, err %v", ph.Name, got.Name, err)
			}
			if want := p.Phases[ph.Name]; !bytes.Equal(PCR11AtPhase(stub, ph.Words...), want) {
				t.Errorf("phase %s: %x, systemd-measure %s", ph.Name, PCR11AtPhase(stub, ph.Words...), want)
			}
		}
	})
	t.Run("unknown phase word", func(t *testing.T) {
		_, err := Compare(pred, events, with(11, PCR11AtPhase(stub, "sysinit", "ready", "shutdown")))
		var me *MismatchError
		if !errors.As(err, &me) || len(me.Mismatches) != 2 {
			t.Fatalf("err = %v", err)
		}
		// The log cannot explain the quote, and the quote is none of the predicted values.
		if !strings.Contains(me.Mismatches[0].Want, "event log replaying") || !strings.Contains(me.Mismatches[1].Want, "(ready)") {
			t.Errorf("%v", err)
		}
	})
	t.Run("PCR not quoted", func(t *testing.T) {
		pcrs := p.pcrs(t)
		delete(pcrs, 4)
		_, err := Compare(pred, events, pcrs)
		if err == nil || !strings.Contains(err.Error(), "PCR 4 value: want quoted value d7fe337d") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("quote differs from log", func(t *testing.T) {
		v := bytes.Clone(p.pcrs(t)[4])
		v[0] ^= 1
		_, err := Compare(pred, events, with(4, v))
		var me *MismatchError
		if !errors.As(err, &me) || len(me.Mismatches) != 2 || me.Mismatches[0].PCR != 4 {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("extra event", func(t *testing.T) {
		// A failed network boot attempt would add a second "Calling EFI
		// Application" before ours; simulate an extra PCR 4 event.
		extra := append([]LogEvent{{Num: 99, PCR: 4, Type: EvEFIAction, Digest: sum([]byte(callingEFIApplicationFromBoot))}}, events...)
		v, _ := replayLog(extra, 4)
		_, err := Compare(pred, extra, with(4, v))
		var me *MismatchError
		if !errors.As(err, &me) {
			t.Fatalf("err = %v", err)
		}
		// Events 1..4 are shifted: 4 differ (separator vs action etc.), plus
		// one unexpected trailing event, plus the value.
		last := me.Mismatches[len(me.Mismatches)-2]
		if last.Index != 4 || last.Want != "no event" || me.Mismatches[len(me.Mismatches)-1].Index != -1 {
			t.Errorf("%v", err)
		}
	})
	t.Run("wrong type, same digest", func(t *testing.T) {
		evs := log.Events()
		for i := range evs {
			if evs[i].Num == 15 {
				evs[i].Type = EvIPL
			}
		}
		_, err := Compare(pred, evs, p.pcrs(t))
		var me *MismatchError
		if !errors.As(err, &me) || len(me.Mismatches) != 1 || me.Mismatches[0].LogNum != 15 || me.Mismatches[0].Index != 0 {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("bad prediction", func(t *testing.T) {
		bad := pred
		bad.Bank = "sha1"
		if _, err := Compare(bad, events, p.pcrs(t)); !errors.Is(err, ErrInput) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("short quoted value", func(t *testing.T) {
		_, err := Compare(pred, events, with(7, []byte{1}))
		if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "PCR 7 value: want 32-byte") {
			t.Errorf("err = %v", err)
		}
	})
}
