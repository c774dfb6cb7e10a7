package tpmseal

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

var (
	keysOnce sync.Once
	keyA     *rsa.PrivateKey
	keyB     *rsa.PrivateKey
)

// testKeys are two PCR policy keys: the platform's and an attacker's.
func testKeys(t *testing.T) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if keyA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keyB, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return keyA, keyB
}

// simTPM is a simulated TPM; seed tells two machines apart. One at a time.
func simTPM(t *testing.T, seed int64) *simulator.Simulator {
	t.Helper()
	sim, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// reboot is the same machine starting again: PCRs back to zero, the same
// seeds (so the same storage root key).
func reboot(t *testing.T, sim *simulator.Simulator, seed int64) *simulator.Simulator {
	t.Helper()
	sim.Close()
	return simTPM(t, seed)
}

func extend(t *testing.T, rw io.ReadWriter, pcr int, what string) {
	t.Helper()
	d := sha256.Sum256([]byte(what))
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: d[:]}}},
	}.Execute(transport.FromReadWriter(rw))
	if err != nil {
		t.Fatal(err)
	}
}

func pcr(t *testing.T, rw io.ReadWriter, i int) []byte {
	t.Helper()
	v, err := readPCR(transport.FromReadWriter(rw), i)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// boot plays firmware and systemd-stub: PCR 7 and PCR 11 get this boot's
// measurements.
func boot(t *testing.T, rw io.ReadWriter, secureBoot, uki string) {
	extend(t, rw, PCRSecureBoot, secureBoot)
	extend(t, rw, PCRKernelImage, uki)
}

func sign(t *testing.T, key *rsa.PrivateKey, values ...[]byte) Signatures {
	t.Helper()
	s, err := Sign(key, values)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSignatures(raw)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

func TestSealUnsealSignedPCR11(t *testing.T) {
	a, _ := testKeys(t)
	sim := simTPM(t, 1)
	boot(t, sim, "secure boot on, platform keys", "uki build 1")
	secret := bytes.Repeat([]byte{0x5a}, 64)
	blob, err := Seal(sim, secret, &a.PublicKey, sign(t, a, pcr(t, sim, PCRKernelImage)))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, secret[:16]) {
		t.Fatal("the blob holds the secret in the clear")
	}
	build1 := pcr(t, sim, PCRKernelImage)
	got, err := Unseal(sim, blob, &a.PublicKey, sign(t, a, build1))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatalf("unsealed %x", got)
	}
	// A later phase of the same boot (systemd-pcrphase) is signed too.
	extend(t, sim, PCRKernelImage, "sysinit")
	if _, err := Unseal(sim, blob, &a.PublicKey, sign(t, a, build1, pcr(t, sim, PCRKernelImage))); err != nil {
		t.Fatalf("signed later phase: %v", err)
	}
}

// TestSealRefusesUnsignedPCR11: a UKI whose PCR 11 the key did not sign
// could never unseal what it sealed, so Seal refuses before the TPM makes
// anything: signatures of another PCR 11, or of this one by another key.
func TestSealRefusesUnsignedPCR11(t *testing.T) {
	a, b := testKeys(t)
	sim := simTPM(t, 7)
	boot(t, sim, "secure boot on", "uki build 1")
	other := sha256.Sum256([]byte("another UKI"))
	for name, sigs := range map[string]Signatures{
		"another PCR 11": sign(t, a, other[:]),
		"another key":    sign(t, b, pcr(t, sim, PCRKernelImage)),
		"none":           {},
	} {
		if blob, err := Seal(sim, []byte("state key"), &a.PublicKey, sigs); !errors.Is(err, ErrNotSigned) || blob != nil {
			t.Errorf("%s: %d bytes, %v; want ErrNotSigned", name, len(blob), err)
		}
	}
	if _, err := Seal(sim, []byte("state key"), &a.PublicKey, sign(t, a, pcr(t, sim, PCRKernelImage))); err != nil {
		t.Fatalf("signed: %v", err)
	}
}

// TestSignedUpgradeStillUnlocks: the next boot runs another UKI (an A/B
// upgrade or a rollback) whose PCR 11 the key signed: the same blob opens.
func TestSignedUpgradeStillUnlocks(t *testing.T) {
	a, _ := testKeys(t)
	sim := simTPM(t, 2)
	boot(t, sim, "secure boot on", "uki build 1")
	blob, err := Seal(sim, []byte("state key"), &a.PublicKey, sign(t, a, pcr(t, sim, PCRKernelImage)))
	if err != nil {
		t.Fatal(err)
	}
	// Reboot into build 2: PCRs reset, the same firmware, another UKI.
	sim = reboot(t, sim, 2)
	boot(t, sim, "secure boot on", "uki build 2")
	if _, err := Unseal(sim, blob, &a.PublicKey, sign(t, a, pcr(t, sim, PCRKernelImage))); err != nil {
		t.Fatalf("signed upgrade: %v", err)
	}
}

// TestUnsignedUKIRefused is the attack: a UKI that the firmware runs (same
// PCR 7: signed with the platform's db key) but whose PCR 11 the PCR policy
// key never signed. Offered the real signatures, or signatures by another
// key, or an approval of this PCR 11 by another key passed off as the
// platform's, the secret stays sealed.
func TestUnsignedUKIRefused(t *testing.T) {
	a, b := testKeys(t)
	sim := simTPM(t, 3)
	boot(t, sim, "secure boot on", "uki build 1")
	blob, err := Seal(sim, []byte("state key"), &a.PublicKey, sign(t, a, pcr(t, sim, PCRKernelImage)))
	if err != nil {
		t.Fatal(err)
	}
	good := pcr(t, sim, PCRKernelImage)
	sim = reboot(t, sim, 3)
	boot(t, sim, "secure boot on", "uki re-signed with the db key, changed cmdline")
	evil := pcr(t, sim, PCRKernelImage)

	// The platform's signatures do not cover this PCR 11.
	if _, err := Unseal(sim, blob, &a.PublicKey, sign(t, a, good)); !errors.Is(err, ErrNotSigned) {
		t.Fatalf("unsigned PCR 11: %v, want ErrNotSigned", err)
	}
	// The attacker signs the evil PCR 11 with their own key and presents it
	// as the policy key: the blob's policy names the platform's key.
	if _, err := Unseal(sim, blob, &b.PublicKey, sign(t, b, evil)); !errors.Is(err, ErrRefused) {
		t.Fatalf("attacker's key: %v, want ErrRefused", err)
	}
	// The attacker's signature relabelled with the platform key's
	// fingerprint: the TPM checks it against the platform's key.
	forged := sign(t, b, evil)
	forged.SHA256[0].PKFP = Fingerprint(&a.PublicKey)
	if _, err := Unseal(sim, blob, &a.PublicKey, forged); !errors.Is(err, ErrRefused) {
		t.Fatalf("forged signature: %v, want ErrRefused", err)
	}
}

// TestPCR7OrOtherTPMRefused: Secure Boot changed (PCR 7), or the blob on
// another machine's TPM: refused even with a valid PCR 11 signature.
func TestPCR7OrOtherTPMRefused(t *testing.T) {
	a, _ := testKeys(t)
	sim := simTPM(t, 4)
	boot(t, sim, "secure boot on", "uki build 1")
	blob, err := Seal(sim, []byte("state key"), &a.PublicKey, sign(t, a, pcr(t, sim, PCRKernelImage)))
	if err != nil {
		t.Fatal(err)
	}
	sim = reboot(t, sim, 4)
	boot(t, sim, "secure boot OFF", "uki build 1")
	sigs := sign(t, a, pcr(t, sim, PCRKernelImage))
	if _, err := Unseal(sim, blob, &a.PublicKey, sigs); !errors.Is(err, ErrRefused) {
		t.Fatalf("PCR 7 changed: %v, want ErrRefused", err)
	}
	sim.Close()

	other := simTPM(t, 5)
	boot(t, other, "secure boot on", "uki build 1")
	if _, err := Unseal(other, blob, &a.PublicKey, sign(t, a, pcr(t, other, PCRKernelImage))); !errors.Is(err, ErrRefused) {
		t.Fatalf("other TPM: %v, want ErrRefused", err)
	}
}

// racingRW extends PCR 11 once, right before the n-th command it forwards:
// systemd-pcrphase moving PCR 11 in the middle of an unseal.
type racingRW struct {
	io.ReadWriter
	t     *testing.T
	n     int
	fired bool
}

func (r *racingRW) Write(p []byte) (int, error) {
	r.n--
	if r.n == 0 && !r.fired {
		r.fired = true
		extend(r.t, r.ReadWriter, PCRKernelImage, "sysinit")
	}
	return r.ReadWriter.Write(p)
}

func TestUnsealRetriesWhenPCR11Moves(t *testing.T) {
	a, _ := testKeys(t)
	sim := simTPM(t, 6)
	boot(t, sim, "secure boot on", "uki build 1")
	blob, err := Seal(sim, []byte("ca key"), &a.PublicKey, sign(t, a, pcr(t, sim, PCRKernelImage)))
	if err != nil {
		t.Fatal(err)
	}
	stub := pcr(t, sim, PCRKernelImage)
	sysinit := sha256.Sum256([]byte("sysinit"))
	next := sha256.Sum256(append(append([]byte{}, stub...), sysinit[:]...))
	sigs := sign(t, a, stub, next[:])
	// Commands of one attempt: PCRRead, LoadExternal, VerifySignature,
	// FlushContext, CreatePrimary, Load, FlushContext, StartAuthSession,
	// PolicyPCR…: fire right before PolicyPCR 11, after PCR 11 was read.
	rw := &racingRW{ReadWriter: sim, t: t, n: 9}
	got, err := Unseal(rw, blob, &a.PublicKey, sigs)
	if err != nil {
		t.Fatalf("unseal across a PCR 11 extension: %v", err)
	}
	if !rw.fired || string(got) != "ca key" {
		t.Fatalf("fired %v, got %q", rw.fired, got)
	}
}

func TestParseSignaturesRefuses(t *testing.T) {
	for name, raw := range map[string]string{
		"not json":   `{`,
		"empty":      `{"sha256":[]}`,
		"pcr 7":      `{"sha256":[{"pcrs":[7],"pkfp":"","pol":"` + string(bytes.Repeat([]byte("0"), 64)) + `","sig":""}]}`,
		"short pol":  `{"sha256":[{"pcrs":[11],"pkfp":"","pol":"00","sig":""}]}`,
		"unknown":    `{"sha1":[]}`,
		"bad base64": `{"sha256":[{"pcrs":[11],"pkfp":"","pol":"` + string(bytes.Repeat([]byte("0"), 64)) + `","sig":"!!"}]}`,
	} {
		if _, err := ParseSignatures([]byte(raw)); !errors.Is(err, ErrInput) {
			t.Errorf("%s: %v, want ErrInput", name, err)
		}
	}
	if _, err := ParseSignatures(bytes.Repeat([]byte(" "), MaxSignatureFile+1)); err == nil {
		t.Error("oversized file accepted")
	}
}

func TestVerifyNamesBadEntry(t *testing.T) {
	a, b := testKeys(t)
	v := sha256.Sum256([]byte("pcr 11"))
	s := sign(t, a, v[:])
	if pols, err := s.Verify(&a.PublicKey); err != nil || len(pols) != 1 {
		t.Fatalf("good: %v %d", err, len(pols))
	}
	if _, err := s.Verify(&b.PublicKey); err == nil {
		t.Fatal("verified with another key")
	}
	s.SHA256[0].Pol = s.SHA256[0].Pol[:62] + "00"
	if _, err := s.Verify(&a.PublicKey); err == nil {
		t.Fatal("changed policy verified")
	}
}

func TestSignDeterministic(t *testing.T) {
	a, _ := testKeys(t)
	v := sha256.Sum256([]byte("pcr 11"))
	x, _ := sign(t, a, v[:]).Marshal()
	y, _ := sign(t, a, v[:]).Marshal()
	if !bytes.Equal(x, y) {
		t.Fatal("two signatures of the same PCR 11 differ: a rebuild would not reproduce")
	}
}

func TestParseBlobRefuses(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":     nil,
		"magic":     []byte("KDTPMS1\x00"),
		"truncated": append([]byte("KDTPMS1\x00"), 0, 9, 1),
		"stray":     append([]byte("KDTPMS1\x00"), 0, 0, 0, 0, 1),
	} {
		if _, _, err := parseBlob(b); !errors.Is(err, ErrInput) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
