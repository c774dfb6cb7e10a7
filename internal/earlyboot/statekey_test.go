package earlyboot

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
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

func TestStateKeySealUnseal(t *testing.T) {
	sim := simTPM(t, 1)
	key, err := NewStateKey(sim, bytes.NewReader(make([]byte, StateKeySize)))
	if err != nil {
		t.Fatal(err)
	}
	// With the kernel's half all zero, the key is the TPM's randomness.
	if len(key) != StateKeySize || bytes.Equal(key, make([]byte, StateKeySize)) {
		t.Fatalf("key %x", key)
	}
	blob, err := SealStateKey(sim, key, StatePCRs)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) > MaxSealedKey {
		t.Fatalf("sealed key is %d bytes, the header holds %d", len(blob), MaxSealedKey)
	}
	if bytes.Contains(blob, key[:16]) {
		t.Fatal("the sealed blob holds the key in the clear")
	}
	got, err := UnsealStateKey(sim, blob)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, key) {
		t.Fatal("unsealed key differs")
	}
	// Other PCRs moving does not matter (PCR 11 changes with every UKI).
	if err := tpm2.PCRExtend(sim, tpmutil.Handle(11), tpm2.AlgSHA256, make([]byte, 32), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := UnsealStateKey(sim, blob); err != nil {
		t.Fatalf("PCR 11 changed: %v", err)
	}
	// Secure Boot changed: PCR 7 differs, the TPM refuses.
	extendPCR7(t, sim)
	_, err = UnsealStateKey(sim, blob)
	if !errors.Is(err, ErrStateSealed) {
		t.Fatalf("after PCR 7 changed: err = %v, want ErrStateSealed", err)
	}
	t.Logf("refusal: %v", err)
}

// A disk moved to another machine: the blob does not load under another
// TPM's storage root key, whatever its PCRs hold.
func TestStateKeyOtherTPM(t *testing.T) {
	a := simTPM(t, 1)
	key := bytes.Repeat([]byte{7}, StateKeySize)
	blob, err := SealStateKey(a, key, StatePCRs)
	if err != nil {
		t.Fatal(err)
	}
	a.Close() // the simulator is one per process
	b := simTPM(t, 2)
	if _, err := UnsealStateKey(b, blob); !errors.Is(err, ErrStateSealed) {
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
	if _, err := UnsealStateKey(sim, []byte{0xff, 0xff, 0xff}); !errors.Is(err, ErrStateHeader) {
		t.Fatalf("err = %v, want ErrStateHeader", err)
	}
}
