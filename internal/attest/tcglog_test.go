package attest

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"github.com/google/go-attestation/attest"

	"github.com/kubedos/kubedos/internal/measure"
)

// This file is a test helper that writes TCG2 event logs, so that tests can
// give the simulated TPM a measured boot and the node a log that matches it.
//
// Format (TCG PC Client Platform Firmware Profile 1.05, §10.2 and §10.4.5),
// all integers little-endian:
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
// TestEncodeTCGLogRoundTrip re-encodes the real OVMF log of
// internal/measure/testdata/proto and gets it back byte for byte.

// protoDir holds the recorded real boot (OVMF + swtpm) that internal/measure
// tests against; these tests use the same files.
const protoDir = "../measure/testdata/proto"

// tcgEvent is one event to log and, unless EV_NO_ACTION, to extend.
type tcgEvent struct {
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

// encodeTCGLog writes a sha256-only crypto-agile event log of events.
func encodeTCGLog(tb testing.TB, events []tcgEvent) []byte {
	tb.Helper()
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }

	spec := new(bytes.Buffer)
	spec.WriteString("Spec ID Event03\x00")
	_ = binary.Write(spec, binary.LittleEndian, uint32(0)) // platformClass
	spec.Write([]byte{0, 2, 0, 2})                         // minor, major, errata, uintnSize
	_ = binary.Write(spec, binary.LittleEndian, uint32(1)) // numberOfAlgorithms
	_ = binary.Write(spec, binary.LittleEndian, [2]uint16{0x000b, 32})
	spec.WriteByte(0) // vendorInfoSize
	le(uint32(0))
	le(eventTypes[measure.EvNoAction])
	b.Write(make([]byte, 20))
	le(uint32(spec.Len()))
	b.Write(spec.Bytes())

	for i, e := range events {
		typ, ok := eventTypes[e.Type]
		if !ok {
			tb.Fatalf("event %d: unknown type %q", i, e.Type)
		}
		if len(e.Digest) != measure.DigestSize {
			tb.Fatalf("event %d: digest of %d bytes", i, len(e.Digest))
		}
		le(uint32(e.PCR))
		le(typ)
		le(uint32(1))
		le(uint16(0x000b))
		b.Write(e.Digest)
		le(uint32(len(e.Data)))
		b.Write(e.Data)
	}
	return b.Bytes()
}

// ovmfEvents returns the events of the real OVMF boot log.
func ovmfEvents(tb testing.TB) []tcgEvent {
	tb.Helper()
	raw, err := os.ReadFile(protoDir + "/eventlog.bin")
	if err != nil {
		tb.Fatal(err)
	}
	log, err := measure.ParseEventLog(raw)
	if err != nil {
		tb.Fatal(err)
	}
	var out []tcgEvent
	for _, e := range log.Events() {
		out = append(out, tcgEvent{PCR: e.PCR, Type: e.Type, Digest: e.Digest, Data: e.Data})
	}
	return out
}

func TestEncodeTCGLogRoundTrip(t *testing.T) {
	raw, err := os.ReadFile(protoDir + "/eventlog.bin")
	if err != nil {
		t.Fatal(err)
	}
	if got := encodeTCGLog(t, ovmfEvents(t)); !bytes.Equal(got, raw) {
		t.Fatalf("re-encoded OVMF log differs: %d bytes, want %d", len(got), len(raw))
	}
}
