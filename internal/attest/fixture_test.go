// The tests that boot simulated nodes use internal/attest/attesttest, which
// imports this package: they are in the external test package, and
// dot-import attest because they were written inside it (the case the Go
// code review comments allow dot imports for).
package attest_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"io"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	. "github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/attest/attesttest"
	"github.com/kubedos/kubedos/internal/efi"
	"github.com/kubedos/kubedos/internal/measure"
)

// protoDir holds the recorded real boot (OVMF + swtpm) that internal/measure
// tests against; these tests use the same files.
const protoDir = "../measure/testdata/proto"

// oidSubjectAltName is id-ce-subjectAltName.
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// Seeds of the simulated TPMs: one node, and another machine's TPM.
const (
	seedNode  = 1
	seedOther = 2
)

// protoPrediction predicts PCR 4, 7 and 11 for the recorded boot's signed
// artifacts, with the UKI's .cmdline replaced by cmdline when not nil (a UKI
// built for another node or build). The recorded log matches the prediction
// made with the recorded cmdline (internal/measure tests that).
func protoPrediction(tb testing.TB, cmdline []byte) measure.Prediction {
	tb.Helper()
	pred, err := attesttest.RecordedPrediction(protoDir, cmdline)
	if err != nil {
		tb.Fatal(err)
	}
	return pred
}

// ovmfEvents returns the events of the real OVMF boot log.
func ovmfEvents(tb testing.TB) []attesttest.Event {
	tb.Helper()
	events, err := attesttest.RecordedEvents(protoDir)
	if err != nil {
		tb.Fatal(err)
	}
	return events
}

// encodeTCGLog is attesttest.EncodeTCGLog, failing the test on error.
func encodeTCGLog(tb testing.TB, events []attesttest.Event) []byte {
	tb.Helper()
	log, err := attesttest.EncodeTCGLog(events)
	if err != nil {
		tb.Fatal(err)
	}
	return log
}

// withPCR11Of returns events with the PCR 11 digests of pred (same sections,
// other contents): the boot of another UKI.
func withPCR11Of(tb testing.TB, events []attesttest.Event, pred measure.Prediction) []attesttest.Event {
	tb.Helper()
	p11, _ := pred.PCR(measure.PCRKernelImage)
	out := slices.Clone(events)
	n := 0
	for i, e := range out {
		if e.PCR == measure.PCRKernelImage {
			out[i].Digest = p11.Events[n].Digest
			n++
		}
	}
	if n != len(p11.Events) {
		tb.Fatalf("log has %d PCR 11 events, prediction %d", n, len(p11.Events))
	}
	return out
}

// secureBootOff returns events as OVMF logs them with Secure Boot disabled:
// SecureBoot = 0 and no authority event (nothing was verified).
func secureBootOff(events []attesttest.Event) []attesttest.Event {
	var out []attesttest.Event
	for _, e := range events {
		switch {
		case e.Type == measure.EvEFIVariableAuthority:
			continue
		case e.Type == measure.EvEFIVariableDriverConfig && bytes.Contains(e.Data, utf16le("SecureBoot")):
			e.Data = measure.VariableData(efi.GlobalVariable, "SecureBoot", []byte{0})
			s := sha256.Sum256(e.Data)
			e.Digest = s[:]
		}
		out = append(out, e)
	}
	return out
}

func utf16le(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r), 0)
	}
	return b
}

// withDigest returns events with event i's digest replaced.
func withDigest(events []attesttest.Event, i int, digest []byte) []attesttest.Event {
	out := slices.Clone(events)
	out[i].Digest = digest
	return out
}

// indexOf returns the position of the n-th (0-based) event of type typ in pcr.
func indexOf(tb testing.TB, events []attesttest.Event, pcr int, typ string, n int) int {
	tb.Helper()
	for i, e := range events {
		if e.PCR == pcr && e.Type == typ {
			if n == 0 {
				return i
			}
			n--
		}
	}
	tb.Fatalf("no event %s in PCR %d", typ, pcr)
	return -1
}

// simTPM starts the simulated TPM with seed. Only one can run at a time: the
// caller must Close it (Prover.Close does) before starting another; it is
// closed at the end of the test in any case.
func simTPM(tb testing.TB, seed int64) *simulator.Simulator {
	tb.Helper()
	sim, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		tb.Fatal(err)
	}
	// However the test ends, free the simulator for the next one.
	tb.Cleanup(func() {
		if !sim.IsClosed() {
			sim.Close()
		}
	})
	return sim
}

// measureBoot extends every event (but EV_NO_ACTION) into the TPM's sha256
// PCRs, as the firmware and systemd-stub would.
func measureBoot(tb testing.TB, rw io.ReadWriter, events []attesttest.Event) {
	tb.Helper()
	if err := attesttest.Extend(rw, events); err != nil {
		tb.Fatal(err)
	}
}

// pcrPhase extends PCR 11 with systemd-pcrphase's words.
func pcrPhase(tb testing.TB, rw io.ReadWriter, words ...string) {
	tb.Helper()
	if err := attesttest.ExtendWords(rw, words...); err != nil {
		tb.Fatal(err)
	}
}

// node is a booted, simulated machine with a Prover.
type node struct {
	sim    *simulator.Simulator
	prover *Prover
	id     Identity
}

// bootNode starts a TPM with seed, measures the measured events into it and
// gives the Prover a log of the served events (the same, unless a test
// tampers with the log). It closes the TPM when the test ends.
func bootNode(tb testing.TB, seed int64, measured, served []attesttest.Event) *node {
	tb.Helper()
	sim := simTPM(tb, seed)
	sn, err := attesttest.NewNode(sim, attesttest.Boot{Measured: measured, Served: served})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := sn.Close(); err != nil {
			tb.Error(err)
		}
	})
	id, err := sn.Prover.Identity()
	if err != nil {
		tb.Fatal(err)
	}
	return &node{sim: sim, prover: sn.Prover, id: id}
}

// activate runs credential activation between hub and node and fails the
// test unless it succeeds.
func activate(tb testing.TB, n *node) {
	tb.Helper()
	ch, secret, err := NewChallenge(n.id)
	if err != nil {
		tb.Fatal(err)
	}
	answer, err := n.prover.ActivateCredential(ch)
	if err != nil {
		tb.Fatal(err)
	}
	if err := VerifyActivation(secret, answer); err != nil {
		tb.Fatal(err)
	}
}

// quote gets evidence over a fresh nonce and the hub's input to verify it.
func quote(tb testing.TB, n *node, pred measure.Prediction) (Evidence, VerifyInput) {
	tb.Helper()
	nonce, err := NewNonce()
	if err != nil {
		tb.Fatal(err)
	}
	ev, err := n.prover.Quote(nonce, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return ev, VerifyInput{AKPublic: n.id.AK.Public, Nonce: nonce, Prediction: pred}
}

// testCA is a certificate authority for EK certificates.
type testCA struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
}

func newTestCA(tb testing.TB, name string) *testCA {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// ekCert issues an EK certificate as the TCG EK credential profile (and
// swtpm_localca) shapes it: empty subject, a critical subject alternative
// name holding the TPM manufacturer, model and version as a directoryName,
// the EK certificate key purpose, key encipherment.
func (ca *testCA) ekCert(tb testing.TB, ekPublicDER []byte, extra ...pkix.Extension) []byte {
	tb.Helper()
	pub, err := x509.ParsePKIXPublicKey(ekPublicDER)
	if err != nil {
		tb.Fatal(err)
	}
	tpmAttrs := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 1}, Value: "id:00001014"},
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 2}, Value: "simulator"},
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 3}, Value: "id:20191023"},
	}}.ToRDNSequence()
	dirName, err := asn1.Marshal(tpmAttrs)
	if err != nil {
		tb.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: dirName}})
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(2),
		NotBefore:          time.Now().Add(-time.Hour),
		NotAfter:           time.Now().Add(24 * time.Hour),
		KeyUsage:           x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}},
		ExtraExtensions:    append([]pkix.Extension{{Id: oidSubjectAltName, Critical: true, Value: san}}, extra...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// writeEKCert stores an EK certificate at the standard RSA EK certificate NV
// index, as swtpm_setup --create-ek-cert does (readable with the index's own
// empty auth, which is how go-attestation reads it).
func writeEKCert(tb testing.TB, rw io.ReadWriter, der []byte) {
	tb.Helper()
	const index = tpmutil.Handle(0x01c00002)
	attrs := tpm2.AttrOwnerWrite | tpm2.AttrOwnerRead | tpm2.AttrAuthRead | tpm2.AttrPPRead | tpm2.AttrNoDA
	if err := tpm2.NVDefineSpace(rw, tpm2.HandleOwner, index, "", "", nil, attrs, uint16(len(der))); err != nil {
		tb.Fatal(err)
	}
	for off := 0; off < len(der); off += 512 {
		end := min(off+512, len(der))
		if err := tpm2.NVWrite(rw, tpm2.HandleOwner, index, "", der[off:end], uint16(off)); err != nil {
			tb.Fatal(err)
		}
	}
}
