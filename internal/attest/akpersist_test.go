package attest

import (
	"bytes"
	"io"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
)

// keepOpen lets two Provers in turn use one simulator: closing a Prover
// must not reset the TPM, as a node's reboot does not reset its TPM's keys.
type keepOpen struct{ io.ReadWriter }

func (keepOpen) Close() error { return nil }

func TestAKSurvivesProverRestart(t *testing.T) {
	sim, err := simulator.GetWithFixedSeedInsecure(7)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	p1, err := NewProver(keepOpen{sim}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id1, err := p1.Identity()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := p1.MarshalAK()
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	p2, err := NewProver(keepOpen{sim}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if err := p2.LoadAK(blob); err != nil {
		t.Fatal(err)
	}
	// Renewal quotes right after LoadAK, without reading the EK (a bug once:
	// the quote demanded Identity first, so real nodes could not renew).
	if _, err := p2.Quote([]byte("renewal-nonce"), nil); err != nil {
		t.Fatalf("quote with a reloaded AK: %v", err)
	}
	if err := p2.LoadAK(blob); err == nil {
		t.Error("a second AK was loaded over the first")
	}
	id2, err := p2.Identity()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(id1.AK.Public, id2.AK.Public) || !bytes.Equal(id1.EKPublic, id2.EKPublic) {
		t.Fatal("the reloaded AK (or EK) differs from the enrolled one")
	}
	if err := (&Prover{}).LoadAK(blob); err == nil {
		t.Error("LoadAK on a closed Prover succeeded")
	}
}

func TestEKPublicMatchesIdentity(t *testing.T) {
	sim, err := simulator.GetWithFixedSeedInsecure(9)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	p, err := NewProver(keepOpen{sim}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ek, err := p.EKPublic()
	if err != nil {
		t.Fatal(err)
	}
	id, err := p.Identity()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ek, id.EKPublic) || EKHash(ek) != EKHash(id.EKPublic) {
		t.Fatal("EKPublic differs from the identity's EK")
	}
}
