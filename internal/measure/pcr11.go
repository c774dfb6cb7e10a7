package measure

import (
	"fmt"
	"slices"
)

// PCRKernelImage is PCR 11, where systemd-stub measures the UKI's sections and
// systemd-pcrphase later marks the boot phases.
const PCRKernelImage = 11

// Stub is a systemd-stub release as PCR 11 sees it: the UKI sections it
// measures (its unified_sections table without .pcrsig, which it never
// measures), in the order it measures them.
type Stub struct {
	Version  int      // systemd major release
	Sections []string // measured section names, in measurement order
	// Unmodelled are sections this release measures in a way not modelled
	// here (multi-profile UKIs, devicetree matching): a UKI with one is
	// refused rather than mispredicted. kubedos writes none of them.
	Unmodelled []string
	// ExactNames: a PE section matches only by its whole 8-byte name (257),
	// not by prefix (252, where ".dtb" would also take ".dtbauto").
	ExactNames bool
}

var (
	// Stub252 is bookworm's systemd-stub.
	Stub252 = Stub{Version: 252, Sections: []string{".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey"}}
	// Stub257 is trixie's: it also measures .ucode, .uname and .sbat (the
	// stub's own, so present in every UKI made from it). Checked against a
	// trixie node's TPM and systemd-measure 257 (TestStub257Recorded).
	Stub257 = Stub{Version: 257, ExactNames: true,
		Sections:   []string{".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname", ".sbat", ".pcrpkey"},
		Unmodelled: []string{".profile", ".dtbauto", ".hwids"}}
)

// StubSectionOrder is Stub252's order, which UKISections follows.
var StubSectionOrder = Stub252.Sections

// StubRelease is the measurement table of a systemd-stub major release.
// Only releases whose measurements were checked against a booted node are
// known: a prediction for any other would be a guess.
func StubRelease(version int) (Stub, error) {
	for _, s := range []Stub{Stub252, Stub257} {
		if s.Version == version {
			return s, nil
		}
	}
	return Stub{}, fmt.Errorf("%w: systemd-stub %d: its PCR 11 measurements are not modelled (252 and 257 are)", ErrInput, version)
}

// Section is one UKI PE section as the stub measures it: its name and the
// sha256 of its content (VirtualSize bytes from the start of the section).
type Section struct {
	Name   string `json:"name"`
	Digest Digest `json:"digest"`
}

// UKISections are the contents of the sections of a UKI, exactly the bytes
// given to objcopy (the file alignment padding is not measured). Empty
// sections are absent, as for the stub.
type UKISections struct {
	Linux, OSRel, Cmdline, Initrd, Splash, DTB, PCRPKey []byte
}

// Sections hashes the present sections, in stub order.
func (u UKISections) Sections() []Section {
	var out []Section
	for i, b := range [][]byte{u.Linux, u.OSRel, u.Cmdline, u.Initrd, u.Splash, u.DTB, u.PCRPKey} {
		if len(b) > 0 {
			out = append(out, Section{Name: StubSectionOrder[i], Digest: sum(b)})
		}
	}
	return out
}

// PredictPCR11 returns the PCR 11 events stub writes for a UKI with the
// given sections, which may come in any order but must be distinct names
// from stub.Sections: for each section, in stub order, an EV_IPL with sha256
// of the NUL-terminated section name, then an EV_IPL with the section's
// content digest. .linux is required: without it the stub does not boot.
func PredictPCR11(stub Stub, sections []Section) ([]Event, error) {
	if len(stub.Sections) == 0 {
		return nil, fmt.Errorf("%w: PCR 11: no systemd-stub release given", ErrInput)
	}
	byName := map[string]Digest{}
	for i, s := range sections {
		if !slices.Contains(stub.Sections, s.Name) {
			return nil, fmt.Errorf("%w: PCR 11: section %d: %q is not measured by systemd-stub %d (want one of %v)", ErrInput, i, s.Name, stub.Version, stub.Sections)
		}
		if _, dup := byName[s.Name]; dup {
			return nil, fmt.Errorf("%w: PCR 11: section %s given twice", ErrInput, s.Name)
		}
		if err := checkDigest("PCR 11: section "+s.Name, s.Digest); err != nil {
			return nil, err
		}
		byName[s.Name] = s.Digest
	}
	if _, ok := byName[".linux"]; !ok {
		return nil, fmt.Errorf("%w: PCR 11: no .linux section", ErrInput)
	}
	var events []Event
	for _, name := range stub.Sections {
		d, ok := byName[name]
		if !ok {
			continue
		}
		events = append(events,
			Event{PCR: PCRKernelImage, Type: EvIPL, Digest: sum(append([]byte(name), 0)), Description: "UKI section name " + name},
			Event{PCR: PCRKernelImage, Type: EvIPL, Digest: Digest(append([]byte(nil), d...)), Description: "UKI section content " + name},
		)
	}
	return events, nil
}

// Phase names a point in the boot at which PCR 11 may be quoted, with the
// systemd-pcrphase words extended into PCR 11 by then, after the stub.
type Phase struct {
	Name  string   `json:"name"`
	Words []string `json:"words"`
}

// Boot phases of a kubedos node (systemd 252 or 257 in the root, the same
// words; none in the initrd, so no "enter-initrd"/"leave-initrd").
var (
	// PhaseStub: right after systemd-stub, before systemd-pcrphase ran, or
	// when it does not run (no usable TPM2 or StubPcrKernelImage not visible).
	PhaseStub = Phase{Name: "stub", Words: []string{}}
	// PhaseSysinit: systemd-pcrphase-sysinit.service ran (after sysinit.target).
	PhaseSysinit = Phase{Name: "sysinit", Words: []string{"sysinit"}}
	// PhaseReady: systemd-pcrphase.service ran (after basic.target and
	// remote-fs.target, before systemd-user-sessions.service): the running
	// system at multi-user.target.
	PhaseReady = Phase{Name: "ready", Words: []string{"sysinit", "ready"}}
)

// BootPhases are the phases at which a node may be quoted, in boot order.
var BootPhases = []Phase{PhaseStub, PhaseSysinit, PhaseReady}

// PCR11AtPhase extends stub, the PCR 11 value systemd-stub left, with each
// phase word as systemd-pcrphase 252 and 257 do: sha256 of the word, no NUL.
func PCR11AtPhase(stub []byte, words ...string) []byte {
	v := append([]byte(nil), stub...)
	for _, w := range words {
		v = Extend(v, sum([]byte(w)))
	}
	return v
}
