package measure

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/efi"
)

// TestPredictMatchesRealBoot: the prediction from the prototype's inputs
// equals the PCR values the guest read and the events in its event log.
func TestPredictMatchesRealBoot(t *testing.T) {
	p := loadProto(t)
	pred, err := Predict(p.inputs(t, p.file(t, "cmdline.txt"), p.file(t, "osrel.txt")))
	if err != nil {
		t.Fatal(err)
	}
	pcrs := p.pcrs(t)
	for _, c := range pred.PCRs {
		if !bytes.Equal(c.Value, pcrs[c.Index]) {
			t.Errorf("PCR %d: predicted %s, booted %x", c.Index, c.Value, pcrs[c.Index])
		}
	}
	for _, ph := range pred.PCR11Phases {
		if want := p.Phases[ph.Name]; !bytes.Equal(ph.Value, want) {
			t.Errorf("PCR 11 at phase %s: predicted %s, systemd-measure %s", ph.Name, ph.Value, want)
		}
	}

	log, err := ParseEventLog(p.file(t, "eventlog.bin"))
	if err != nil {
		t.Fatal(err)
	}
	phase, err := Compare(pred, log.Events(), pcrs)
	if err != nil {
		t.Fatalf("Compare: %v", err)
	}
	if phase.Name != "stub" {
		t.Errorf("phase %q, want stub (no systemd ran)", phase.Name)
	}

	// The expected event lists, as confirmed in the log.
	want := map[int][]string{
		4:  {EvEFIAction, EvSeparator, EvEFIBootServicesApplication, EvEFIBootServicesApplication},
		7:  {EvEFIVariableDriverConfig, EvEFIVariableDriverConfig, EvEFIVariableDriverConfig, EvEFIVariableDriverConfig, EvEFIVariableDriverConfig, EvSeparator, EvEFIVariableAuthority},
		11: {EvIPL, EvIPL, EvIPL, EvIPL, EvIPL, EvIPL, EvIPL, EvIPL},
	}
	for pcr, types := range want {
		c, _ := pred.PCR(pcr)
		var got []string
		for _, e := range c.Events {
			got = append(got, e.Type)
		}
		if strings.Join(got, " ") != strings.Join(types, " ") {
			t.Errorf("PCR %d events %v, want %v", pcr, got, types)
		}
	}
}

// TestEventDataLayouts checks the event data the firmware and the stub wrote
// against the structures the prediction hashes.
func TestEventDataLayouts(t *testing.T) {
	p := loadProto(t)
	log, err := ParseEventLog(p.file(t, "eventlog.bin"))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := FindSignatureData(p.file(t, "db.esl"), p.file(t, "db.cer"))
	if err != nil {
		t.Fatal(err)
	}
	wantData := map[string][]byte{
		"SecureBoot": VariableData(efi.GlobalVariable, "SecureBoot", []byte{1}),
		"PK":         VariableData(efi.GlobalVariable, "PK", p.file(t, "PK.esl")),
		"KEK":        VariableData(efi.GlobalVariable, "KEK", p.file(t, "KEK.esl")),
		"db":         VariableData(efi.ImageSecurityDatabase, "db", p.file(t, "db.esl")),
		"dbx":        VariableData(efi.ImageSecurityDatabase, "dbx", nil),
		"authority":  VariableData(efi.ImageSecurityDatabase, "db", auth),
	}
	var pcr7, pcr4, pcr11 []LogEvent
	for _, e := range log.Events() {
		switch e.PCR {
		case 4:
			pcr4 = append(pcr4, e)
		case 7:
			pcr7 = append(pcr7, e)
		case 11:
			pcr11 = append(pcr11, e)
		}
	}
	for i, name := range []string{"SecureBoot", "PK", "KEK", "db", "dbx", "", "authority"} {
		if name == "" {
			if !bytes.Equal(pcr7[i].Data, []byte{0, 0, 0, 0}) {
				t.Errorf("PCR 7 separator data %x", pcr7[i].Data)
			}
			continue
		}
		if !bytes.Equal(pcr7[i].Data, wantData[name]) {
			t.Errorf("PCR 7 event %d (%s): data differs from UEFI_VARIABLE_DATA", i, name)
		}
		if !bytes.Equal(pcr7[i].Digest, sum(pcr7[i].Data)) {
			t.Errorf("PCR 7 event %d (%s): digest is not sha256 of the event data", i, name)
		}
	}
	if string(pcr4[0].Data) != callingEFIApplicationFromBoot {
		t.Errorf("PCR 4 action data %q", pcr4[0].Data)
	}
	for i, e := range pcr11 {
		name := StubSectionOrder[i/2]
		if !bytes.Equal(e.Data, utf16z(name)) {
			t.Errorf("PCR 11 event %d: data %x, want UTF-16LE %q with NUL", i, e.Data, name)
		}
	}
}

func utf16z(s string) []byte {
	var b []byte
	for _, c := range s {
		b = append(b, byte(c), 0)
	}
	return append(b, 0, 0)
}

// TestTamperedCmdline: one changed byte in .cmdline changes PCR 11 and
// Compare names the event and the PCR value.
func TestTamperedCmdline(t *testing.T) {
	p := loadProto(t)
	good, err := Predict(p.inputs(t, p.file(t, "cmdline.txt"), p.file(t, "osrel.txt")))
	if err != nil {
		t.Fatal(err)
	}
	cmdline := p.file(t, "cmdline.txt")
	cmdline[8] ^= 1
	bad, err := Predict(p.inputs(t, cmdline, p.file(t, "osrel.txt")))
	if err != nil {
		t.Fatal(err)
	}
	g11, _ := good.PCR(11)
	b11, _ := bad.PCR(11)
	if bytes.Equal(g11.Value, b11.Value) {
		t.Fatal("PCR 11 unchanged by a changed .cmdline")
	}
	for _, i := range []int{4, 7} {
		g, _ := good.PCR(i)
		b, _ := bad.PCR(i)
		if !bytes.Equal(g.Value, b.Value) {
			t.Errorf("PCR %d changed by .cmdline", i)
		}
	}

	log, err := ParseEventLog(p.file(t, "eventlog.bin"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compare(bad, log.Events(), p.pcrs(t))
	var me *MismatchError
	if !errors.As(err, &me) || !errors.Is(err, ErrMismatch) {
		t.Fatalf("Compare: %v, want *MismatchError", err)
	}
	if len(me.Mismatches) != 2 {
		t.Fatalf("mismatches %v, want the .cmdline content event and the PCR 11 value", me.Mismatches)
	}
	ev, val := me.Mismatches[0], me.Mismatches[1]
	if ev.PCR != 11 || ev.Index != 5 || ev.LogNum != 33 || !strings.Contains(ev.Want, b11.Events[5].Digest.String()) ||
		!strings.Contains(ev.Want, "content .cmdline") || !strings.Contains(ev.Got, g11.Events[5].Digest.String()) {
		t.Errorf("event mismatch %+v", ev)
	}
	if val.PCR != 11 || val.Index != -1 || !strings.Contains(val.Got, g11.Value.String()) || !strings.Contains(val.Want, b11.Value.String()) {
		t.Errorf("value mismatch %+v", val)
	}
	t.Log(err)
}

func TestPredictionJSONRoundTrip(t *testing.T) {
	p := loadProto(t)
	pred, err := Predict(p.inputs(t, p.file(t, "cmdline.txt"), p.file(t, "osrel.txt")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(pred, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"bank": "sha256"`, `"value": "d7fe337d8e7b8954d3ab569f64c992f73626b1e8bdc88fc2770235ea5b29c2b5"`, `"name": "ready"`, `"words": [`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("JSON lacks %s:\n%s", s, b)
		}
	}
	var back Prediction
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Validate(); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.MarshalIndent(back, "", "  ")
	if !bytes.Equal(b, b2) {
		t.Error("JSON round trip changed the prediction")
	}

	// A manifest edited by hand no longer validates.
	back.PCRs[0].Events[3].Digest[0] ^= 1
	if err := back.Validate(); !errors.Is(err, ErrInput) {
		t.Errorf("Validate of an edited prediction: %v", err)
	}
}

func TestPredictBadInputs(t *testing.T) {
	p := loadProto(t)
	base := func() Inputs { return p.inputs(t, p.file(t, "cmdline.txt"), p.file(t, "osrel.txt")) }
	tests := []struct {
		name   string
		mutate func(*Inputs)
		want   string
	}{
		{"short boot loader digest", func(in *Inputs) { in.BootLoader = in.BootLoader[:20] }, "EFI application 0"},
		{"no UKI digest", func(in *Inputs) { in.UKI = nil }, "EFI application 1"},
		{"no PK", func(in *Inputs) { in.SecureBoot.PK = nil }, "PK is empty"},
		{"truncated KEK", func(in *Inputs) { in.SecureBoot.KEK = in.SecureBoot.KEK[:100] }, "variable KEK"},
		{"no authority", func(in *Inputs) { in.Authorities = nil }, "no authority"},
		{"authority not in db", func(in *Inputs) {
			a := bytes.Clone(in.Authorities[0])
			a[0] ^= 1
			in.Authorities = [][]byte{a}
		}, "not an entry of db"},
		{"unknown section", func(in *Inputs) { in.Sections = append(in.Sections, Section{Name: ".sbat", Digest: sum(nil)}) }, `".sbat"`},
		{"duplicate section", func(in *Inputs) { in.Sections = append(in.Sections, in.Sections[0]) }, "given twice"},
		{"no kernel", func(in *Inputs) { in.Sections = in.Sections[:2] }, "no .linux"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			tt.mutate(&in)
			_, err := Predict(in)
			if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrInput mentioning %q", err, tt.want)
			}
		})
	}
}

// Two distinct db certificates give two authority events, in first-use order.
func TestPCR7TwoAuthorities(t *testing.T) {
	p := loadProto(t)
	a := p.file(t, "db.esl")[eslHeaderSize:] // the one entry of db.esl
	other := SignatureData(efi.MustParse("00000000-0000-0000-0000-000000000001"), []byte("second cert"))
	db := append(bytes.Clone(p.file(t, "db.esl")), eslOf(efi.CertX509, other)...)
	events, err := PredictPCR7(SecureBootVars{PK: p.file(t, "PK.esl"), KEK: p.file(t, "KEK.esl"), DB: db}, a, other, a)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 8 || events[6].Type != EvEFIVariableAuthority || events[7].Type != EvEFIVariableAuthority ||
		!bytes.Equal(events[6].Digest, sum(VariableData(efi.ImageSecurityDatabase, "db", a))) ||
		!bytes.Equal(events[7].Digest, sum(VariableData(efi.ImageSecurityDatabase, "db", other))) {
		t.Errorf("events %+v", events)
	}
}
