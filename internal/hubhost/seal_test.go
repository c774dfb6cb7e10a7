package hubhost

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/kubedos/kubedos/internal/attest/attesttest"
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

func TestSealSurvivesAPCRChangingMeanwhile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		races   int
		wantErr string
	}{
		{name: "once", races: 1},
		{name: "every attempt", races: 1000, wantErr: "PCRs kept changing during 5 attempts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, sim := simSealer(t, 7)
			rt := sealRace(sim, tc.races)
			s.Open = func() (io.ReadWriteCloser, error) { return attesttest.NoClose(rt), nil }
			blob, err := s.Seal([]byte("ca key"))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("seal: %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("seal: %v", err)
			}
			if rt.races != 0 {
				t.Fatal("the race was never provoked")
			}
			got, err := s.Unseal(blob)
			if err != nil || string(got) != "ca key" {
				t.Fatalf("unseal: %q, %v", got, err)
			}
		})
	}
}

// TestSealRaceText pins pcrsModifiedText: the library's own Seal, raced once,
// must fail with that text, or sealRetrying would stop retrying (and a
// master booting up would fail to take the hub over) without any test of
// ours noticing why.
func TestSealRaceText(t *testing.T) {
	_, sim := simSealer(t, 7)
	rt := sealRace(sim, 1)
	srk, err := client.StorageRootKeyECC(rt)
	if err != nil {
		t.Fatal(err)
	}
	defer srk.Close()
	_, err = srk.Seal(make([]byte, 32), client.SealOpts{Current: tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: SealPCRs}})
	if rt.races != 0 {
		t.Fatal("the race was never provoked")
	}
	if err == nil || !strings.Contains(err.Error(), pcrsModifiedText) {
		t.Fatalf("go-tpm-tools Seal raced = %v; want an error containing %q (did the library change its text?)", err, pcrsModifiedText)
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
		{name: "every attempt", races: 1000, wantErr: "PCRs kept changing during 5 attempts"},
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
