package hubhost

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/kubedos/kubedos/internal/attest/attesttest"
	"google.golang.org/protobuf/proto"
)

// TPM 2.0 command codes the racing transport watches for.
const (
	ccCreate    = 0x153
	ccPCRRead   = 0x17e
	ccPolicyPCR = 0x17f
	ccUnseal    = 0x15e
)

// racingTPM extends PCR 16 between two TPM commands, arm then fire, as
// systemd-pcrphase may on a booting node: between the TPM2_Create of a
// sealed object and the PCR read that follows it (sealRace), or between
// TPM2_PolicyPCR and TPM2_Unseal (unsealRace).
type racingTPM struct {
	io.ReadWriteCloser
	arm, fire uint32
	races     int // how many times to disturb
	armed     bool
}

func sealRace(rw io.ReadWriteCloser, races int) *racingTPM {
	return &racingTPM{ReadWriteCloser: rw, arm: ccCreate, fire: ccPCRRead, races: races}
}

func unsealRace(rw io.ReadWriteCloser, races int) *racingTPM {
	return &racingTPM{ReadWriteCloser: rw, arm: ccPolicyPCR, fire: ccUnseal, races: races}
}

func (r *racingTPM) Write(cmd []byte) (int, error) {
	if len(cmd) >= 10 {
		switch binary.BigEndian.Uint32(cmd[6:10]) {
		case r.arm:
			r.armed = true
		case r.fire:
			if r.armed && r.races > 0 {
				r.races--
				if err := tpm2.PCRExtend(r.ReadWriteCloser, 16, tpm2.AlgSHA256, bytes.Repeat([]byte{1}, 32), ""); err != nil {
					return 0, err
				}
			}
			r.armed = false
		}
	}
	return r.ReadWriteCloser.Write(cmd)
}

// Sealing reads PCR 7 and creates the object under an explicit policy:
// PCRs moving meanwhile (systemd-pcrphase on a booting master) cannot make
// it fail, as go-tpm-tools' certify-and-compare seal did.
func TestSealIgnoresPCRsMovingMeanwhile(t *testing.T) {
	s, sim := simSealer(t, 7)
	rt := sealRace(sim, 1000)
	s.Open = func() (io.ReadWriteCloser, error) { return attesttest.NoClose(rt), nil }
	blob, err := s.Seal([]byte("ca key"))
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	s.Open = func() (io.ReadWriteCloser, error) { return attesttest.NoClose(sim), nil }
	got, err := s.Unseal(blob)
	if err != nil || string(got) != "ca key" {
		t.Fatalf("unseal: %q, %v", got, err)
	}
}

// The attack on the master: its disk booted with a UKI that the firmware
// runs but the platform's PCR policy key did not sign (PCR 11 moves to a
// value no entry approves): the CA key stays sealed, and a UKI whose own
// policy names another key does not help.
func TestCAKeyRefusedUnderUnsignedUKI(t *testing.T) {
	s, sim := simSealer(t, 11)
	blob, err := s.Seal([]byte("ca key"))
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("a changed UKI re-signed with the db key"))
	if err := tpm2.PCRExtend(sim, 11, tpm2.AlgSHA256, d[:], ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Unseal(blob); err == nil || !strings.Contains(err.Error(), "not a value the PCR policy key signed") {
		t.Fatalf("unseal under an unsigned PCR 11: %v", err)
	}
	// Nor can such a UKI seal a new one: it could never open it again.
	if _, err := s.Seal([]byte("x")); err == nil {
		t.Fatal("sealed under an unsigned PCR 11")
	}
}

// A master that took the hub before the signed policy holds a PCR-7-only
// blob: it still opens.
func TestLegacyCAKeyStillUnseals(t *testing.T) {
	s, sim := simSealer(t, 12)
	srk, err := client.StorageRootKeyECC(sim)
	if err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{3}, 32)
	sb, err := srk.Seal(key, client.SealOpts{Current: tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: []int{7}}})
	srk.Close()
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := proto.Marshal(sb)
	aead, _ := gcm(key)
	nonce := make([]byte, aead.NonceSize())
	env, _ := json.Marshal(envelope{Sealed: sealed, Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, []byte("old ca key"), nil)})
	got, err := s.Unseal(env)
	if err != nil || string(got) != "old ca key" {
		t.Fatalf("legacy unseal: %q, %v", got, err)
	}
}

// The unseal race: the TPM refuses the unseal with TPM_RC_PCR_CHANGED
// although PCR 7, the one sealed to, never moved. A master taking the hub
// over while systemd-pcrphase extends PCR 11 lost exactly this race in CI.
func TestUnsealSurvivesAPCRChangingMeanwhile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		races   int
		wantErr string
	}{
		{name: "once", races: 1},
		{name: "every attempt", races: 1000, wantErr: "TPM_RC_PCR_CHANGED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, sim := simSealer(t, 7)
			blob, err := s.Seal([]byte("ca key"))
			if err != nil {
				t.Fatalf("seal: %v", err)
			}
			rt := unsealRace(sim, tc.races)
			s.Open = func() (io.ReadWriteCloser, error) { return attesttest.NoClose(rt), nil }
			got, err := s.Unseal(blob)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("unseal: %v, want %q", err, tc.wantErr)
				}
				return
			}
			if rt.races != 0 {
				t.Fatal("the race was never provoked")
			}
			if err != nil || string(got) != "ca key" {
				t.Fatalf("unseal: %q, %v", got, err)
			}
		})
	}
}
