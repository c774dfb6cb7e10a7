package attesttest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/google/go-attestation/attest"

	"github.com/kubedos/kubedos/internal/efi"
	"github.com/kubedos/kubedos/internal/measure"
)

// Event is one event to log and, unless EV_NO_ACTION, to extend.
type Event struct {
	PCR    int
	Type   string // go-attestation's name, as in measure.LogEvent.Type
	Digest []byte // sha256
	Data   []byte
}

// eventTypes maps go-attestation's event type names back to their values.
var eventTypes = func() map[string]uint32 {
	m := map[string]uint32{}
	for t := uint32(0); t <= 0x12; t++ {
		m[attest.EventType(t).String()] = t
	}
	for t := uint32(0x80000000); t <= 0x800000ff; t++ {
		m[attest.EventType(t).String()] = t
	}
	return m
}()

// EncodeTCGLog writes a sha256-only crypto-agile event log of events. Format
// (TCG PC Client Platform Firmware Profile 1.05, §10.2 and §10.4.5), all
// integers little-endian:
//
//   - The first event is the Spec ID header in the SHA1 event format
//     (TCG_PCClientPCREvent): PCRIndex u32 = 0, EventType u32 = EV_NO_ACTION,
//     a 20-byte zero digest, EventSize u32, then TCG_EfiSpecIDEvent:
//     Signature "Spec ID Event03\0", platformClass u32 = 0, specVersionMinor
//     u8 = 0, specVersionMajor u8 = 2, specErrata u8 = 0, uintnSize u8 = 2,
//     numberOfAlgorithms u32 = 1, {algorithmId u16 = 0x000b (sha256),
//     digestSize u16 = 32}, vendorInfoSize u8 = 0. This is exactly what
//     OVMF with a sha256-only swtpm writes.
//   - Every other event is a TCG_PCR_EVENT2: PCRIndex u32, EventType u32,
//     TPML_DIGEST_VALUES (count u32 = 1, hashAlg u16 = 0x000b, 32-byte
//     digest), EventSize u32, Event (EventSize bytes).
//
// Re-encoding the events of the real OVMF log in internal/measure/testdata
// gives it back byte for byte (tested).
func EncodeTCGLog(events []Event) ([]byte, error) {
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }

	spec := new(bytes.Buffer)
	spec.WriteString("Spec ID Event03\x00")
	_ = binary.Write(spec, binary.LittleEndian, uint32(0)) // platformClass
	spec.Write([]byte{0, 2, 0, 2})                         // minor, major, errata, uintnSize
	_ = binary.Write(spec, binary.LittleEndian, uint32(1)) // numberOfAlgorithms
	_ = binary.Write(spec, binary.LittleEndian, [2]uint16{0x000b, measure.DigestSize})
	spec.WriteByte(0) // vendorInfoSize
	le(uint32(0))
	le(eventTypes[measure.EvNoAction])
	b.Write(make([]byte, 20))
	le(uint32(spec.Len()))
	b.Write(spec.Bytes())

	for i, e := range events {
		typ, ok := eventTypes[e.Type]
		if !ok {
			return nil, fmt.Errorf("event %d: unknown type %q", i, e.Type)
		}
		if len(e.Digest) != measure.DigestSize {
			return nil, fmt.Errorf("event %d (PCR %d, %s): digest of %d bytes, want %d", i, e.PCR, e.Type, len(e.Digest), measure.DigestSize)
		}
		if e.PCR < 0 || e.PCR > 23 {
			return nil, fmt.Errorf("event %d: PCR %d outside 0–23", i, e.PCR)
		}
		le(uint32(e.PCR))
		le(typ)
		le(uint32(1))
		le(uint16(0x000b))
		b.Write(e.Digest)
		le(uint32(len(e.Data)))
		b.Write(e.Data)
	}
	return b.Bytes(), nil
}

// ParseTCGLog returns the events of a crypto-agile log (after its Spec ID
// header) with their sha256 digests: a recorded boot to measure again.
func ParseTCGLog(raw []byte) ([]Event, error) {
	log, err := measure.ParseEventLog(raw)
	if err != nil {
		return nil, err
	}
	var out []Event
	for _, e := range log.Events() {
		out = append(out, Event{PCR: e.PCR, Type: e.Type, Digest: e.Digest, Data: e.Data})
	}
	return out, nil
}

// PredictedEvents returns the events a node booting exactly what pred
// predicts measures into PCR 4, 7 and 11, in the order firmware and
// systemd-stub log them: PCR 7's Secure Boot variables and separator, PCR
// 4's boot option, separator and applications, PCR 7's authorities, then
// PCR 11's UKI sections. The prediction keeps digests only, so the event
// data is filled in where it follows from the digest (the SecureBoot
// variable, which the hub reads, separators, the EV_EFI_ACTION string) and
// left empty otherwise; nothing checks the rest. PCRs other than 4, 7 and
// 11 get no event, as in a quote of those three.
func PredictedEvents(pred measure.Prediction) ([]Event, error) {
	if err := pred.Validate(); err != nil {
		return nil, err
	}
	var p4, p7pre, p7post, p11, other []Event
	for _, c := range pred.PCRs {
		for _, e := range c.Events {
			ev := Event{PCR: e.PCR, Type: e.Type, Digest: bytes.Clone(e.Digest), Data: eventData(e)}
			switch {
			case e.PCR == measure.PCRBootLoaderCode:
				p4 = append(p4, ev)
			case e.PCR == measure.PCRSecureBootPolicy && e.Type == measure.EvEFIVariableAuthority:
				p7post = append(p7post, ev)
			case e.PCR == measure.PCRSecureBootPolicy:
				p7pre = append(p7pre, ev)
			case e.PCR == measure.PCRKernelImage:
				p11 = append(p11, ev)
			default:
				other = append(other, ev)
			}
		}
	}
	var out []Event
	for _, evs := range [][]Event{p7pre, p4, p7post, p11, other} {
		out = append(out, evs...)
	}
	return out, nil
}

// eventData is the data firmware logs for a predicted event, when the
// digest says what it was.
func eventData(e measure.Event) []byte {
	for _, data := range [][]byte{
		measure.VariableData(efi.GlobalVariable, "SecureBoot", []byte{1}),
		measure.VariableData(efi.GlobalVariable, "SecureBoot", []byte{0}),
		{0, 0, 0, 0},
		[]byte("Calling EFI Application from Boot Option"),
	} {
		if s := sha256.Sum256(data); bytes.Equal(s[:], e.Digest) {
			return data
		}
	}
	return nil
}
