package earlyboot

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
	"github.com/kubedos/kubedos/internal/tpmseal"
)

// simTPM is a simulated TPM; seed tells two machines apart. The library
// runs one at a time: close one before asking for the next.
func simTPM(t *testing.T, seed int64) *simulator.Simulator {
	t.Helper()
	sim, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// extendPCR7 is what firmware does when Secure Boot state or keys differ.
func extendPCR7(t *testing.T, tpm io.ReadWriter) {
	t.Helper()
	d := sha256.Sum256([]byte("Secure Boot off"))
	if err := tpm2.PCRExtend(tpm, tpmutil.Handle(7), tpm2.AlgSHA256, d[:], ""); err != nil {
		t.Fatal(err)
	}
}

var (
	policyKeyOnce sync.Once
	policyKey     *rsa.PrivateKey
)

// testPolicyKey is the platform's PCR policy key in these tests.
func testPolicyKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	policyKeyOnce.Do(func() {
		var err error
		if policyKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return policyKey
}

// bootUKI plays systemd-stub measuring a UKI into PCR 11 and returns the
// policy that UKI carries: its PCR 11 signed by the platform's key.
func bootUKI(t *testing.T, tpm io.ReadWriter, uki string) StatePolicy {
	t.Helper()
	d := sha256.Sum256([]byte(uki))
	if err := tpm2.PCRExtend(tpm, tpmutil.Handle(11), tpm2.AlgSHA256, d[:], ""); err != nil {
		t.Fatal(err)
	}
	return signCurrent(t, tpm)
}

// signCurrent is the policy signing the current PCR 11.
func signCurrent(t *testing.T, tpm io.ReadWriter) StatePolicy {
	t.Helper()
	vals, err := tpm2.ReadPCRs(tpm, tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: []int{11}})
	if err != nil {
		t.Fatal(err)
	}
	k := testPolicyKey(t)
	sigs, err := tpmseal.Sign(k, [][]byte{vals[11]})
	if err != nil {
		t.Fatal(err)
	}
	return StatePolicy{Key: &k.PublicKey, Signatures: sigs}
}

func TestStateKeySealUnseal(t *testing.T) {
	sim := simTPM(t, 1)
	policy := bootUKI(t, sim, "uki build 1")
	key, err := NewStateKey(sim, bytes.NewReader(make([]byte, StateKeySize)))
	if err != nil {
		t.Fatal(err)
	}
	// With the kernel's half all zero, the key is the TPM's randomness.
	if len(key) != StateKeySize || bytes.Equal(key, make([]byte, StateKeySize)) {
		t.Fatalf("key %x", key)
	}
	blob, err := SealStateKey(sim, key, policy)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) > MaxSealedKey {
		t.Fatalf("sealed key is %d bytes, the header holds %d", len(blob), MaxSealedKey)
	}
	if bytes.Contains(blob, key[:16]) {
		t.Fatal("the sealed blob holds the key in the clear")
	}
	got, err := UnsealStateKey(sim, blob, policy)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, key) {
		t.Fatal("unsealed key differs")
	}
	// The attack: another UKI (PCR 11 moves) that the platform's PCR policy
	// key did not sign, offered the old signatures: refused.
	unsigned := bootUKI(t, sim, "changed UKI re-signed with the db key")
	_, err = UnsealStateKey(sim, blob, policy)
	if !errors.Is(err, ErrStateSealed) || !strings.Contains(err.Error(), "not one the platform's PCR policy key signed") {
		t.Fatalf("unsigned PCR 11: err = %v, want ErrStateSealed naming the signature", err)
	}
	// A UKI the key signed (an A/B upgrade) unlocks the same blob.
	if _, err := UnsealStateKey(sim, blob, unsigned); err != nil {
		t.Fatalf("signed new PCR 11: %v", err)
	}
	// Secure Boot changed: PCR 7 differs, the TPM refuses.
	extendPCR7(t, sim)
	_, err = UnsealStateKey(sim, blob, unsigned)
	if !errors.Is(err, ErrStateSealed) {
		t.Fatalf("after PCR 7 changed: err = %v, want ErrStateSealed", err)
	}
	t.Logf("refusal: %v", err)
}

// First boot of a UKI whose PCR 11 is not signed: nothing is sealed.
func TestSealStateKeyRefusesUnsignedUKI(t *testing.T) {
	sim := simTPM(t, 5)
	policy := bootUKI(t, sim, "uki build 1")
	bootUKI(t, sim, "another UKI")
	_, err := SealStateKey(sim, bytes.Repeat([]byte{1}, StateKeySize), policy)
	if !errors.Is(err, tpmseal.ErrNotSigned) {
		t.Fatalf("err = %v, want ErrNotSigned", err)
	}
	// The console's words, which the e2e (TestChangedUKIResigned) looks for.
	if !regexp.MustCompile(`^PCR 11 is not a value the PCR policy key signed \(PCR 11 [0-9a-f]{64}, 1 signed values\): refusing to seal the state key$`).MatchString(err.Error()) {
		t.Errorf("the refusal reads %q", err)
	}
	if _, err := SealStateKey(sim, bytes.Repeat([]byte{1}, StateKeySize), StatePolicy{}); !errors.Is(err, ErrNoStatePolicy) {
		t.Fatalf("no policy: err = %v, want ErrNoStatePolicy", err)
	}
}

// A disk sealed before the signed PCR 11 policy (PCR 7 alone) still opens,
// and still refuses a changed PCR 7.
func TestLegacyStateKeyStillUnlocks(t *testing.T) {
	sim := simTPM(t, 6)
	key := bytes.Repeat([]byte{9}, StateKeySize)
	blob, err := sealLegacy(sim, key)
	if err != nil {
		t.Fatal(err)
	}
	bootUKI(t, sim, "any UKI")
	if got, err := UnsealStateKey(sim, blob, StatePolicy{}); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("legacy unseal: %v", err)
	}
	extendPCR7(t, sim)
	if _, err := UnsealStateKey(sim, blob, StatePolicy{}); !errors.Is(err, ErrStateSealed) {
		t.Fatalf("legacy after PCR 7 changed: %v", err)
	}
}

// A disk moved to another machine: the blob does not load under another
// TPM's storage root key, whatever its PCRs hold.
func TestStateKeyOtherTPM(t *testing.T) {
	a := simTPM(t, 1)
	policy := bootUKI(t, a, "uki build 1")
	key := bytes.Repeat([]byte{7}, StateKeySize)
	blob, err := SealStateKey(a, key, policy)
	if err != nil {
		t.Fatal(err)
	}
	a.Close() // the simulator is one per process
	b := simTPM(t, 2)
	if _, err := UnsealStateKey(b, blob, bootUKI(t, b, "uki build 1")); !errors.Is(err, ErrStateSealed) {
		t.Fatalf("another TPM: err = %v, want ErrStateSealed", err)
	}
}

func TestStateKeyMixesBothSources(t *testing.T) {
	sim := simTPM(t, 3)
	kernel := bytes.Repeat([]byte{0xff}, StateKeySize)
	k1, err := NewStateKey(sim, bytes.NewReader(kernel))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(k1, kernel) {
		t.Fatal("the TPM's randomness is not in the key")
	}
	if _, err := NewStateKey(sim, bytes.NewReader(kernel[:10])); err == nil {
		t.Fatal("a short kernel read made a key")
	}
}

func TestUnsealGarbage(t *testing.T) {
	sim := simTPM(t, 4)
	if _, err := UnsealStateKey(sim, []byte{0xff, 0xff, 0xff}, StatePolicy{}); !errors.Is(err, ErrStateHeader) {
		t.Fatalf("err = %v, want ErrStateHeader", err)
	}
	if _, err := UnsealStateKey(sim, []byte("KDTPMS1\x00\x00"), bootUKI(t, sim, "uki")); !errors.Is(err, ErrStateHeader) {
		t.Fatalf("err = %v, want ErrStateHeader", err)
	}
}
