package attest_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-tpm/legacy/tpm2"

	. "github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/attest/attesttest"
	"github.com/kubedos/kubedos/internal/errdefs"
)

// otherEK returns the EK public key of another machine's TPM.
func otherEK(t *testing.T) []byte {
	t.Helper()
	sim := simTPM(t, seedOther)
	p, err := NewProver(sim, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	id, err := p.Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id.EKPublic
}

// A node that presents another TPM's EK with its own AK cannot answer the
// challenge: its TPM does not hold that EK.
func TestAKNotOnEKsTPM(t *testing.T) {
	foreign := otherEK(t)
	boot := ovmfEvents(t)
	n := bootNode(t, seedNode, boot, boot)
	if bytes.Equal(foreign, n.id.EKPublic) {
		t.Fatal("both simulated TPMs have the same EK")
	}
	id := n.id
	id.EKPublic = foreign
	ch, secret, err := NewChallenge(id)
	if err != nil {
		t.Fatal(err) // the AK itself is fine; the EK is someone else's
	}
	answer, err := n.prover.ActivateCredential(ch)
	if err == nil && bytes.Equal(answer, secret) {
		t.Fatal("the TPM released a secret encrypted to another TPM's EK")
	}
	t.Logf("node: %v", err)
	assertRefused(t, VerifyActivation(secret, answer), CheckAKBinding, "not in the TPM holding the EK")
	assertRefused(t, VerifyActivation(secret, nil), CheckAKBinding)
	if err := VerifyActivation(nil, answer); !errors.Is(err, ErrInput) || errors.Is(err, ErrRefused) || errors.Is(err, errdefs.ErrPermission) {
		t.Errorf("no secret on the hub: %v, want an input error", err)
	}
}

// The hub refuses AK parameters that are not a TPM-made restricted signing
// key before it issues a challenge.
func TestNewChallengeRefusesBadAK(t *testing.T) {
	boot := ovmfEvents(t)
	n := bootNode(t, seedNode, boot, boot)

	unrestricted := func(id *Identity) {
		pub, err := tpm2.DecodePublic(id.AK.Public)
		if err != nil {
			t.Fatal(err)
		}
		pub.Attributes &^= tpm2.FlagRestricted
		if id.AK.Public, err = pub.Encode(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		tamper func(*Identity)
		detail string
	}{
		{"creation signature forged", func(id *Identity) {
			id.AK.CreateSignature = bytes.Clone(id.AK.CreateSignature)
			id.AK.CreateSignature[len(id.AK.CreateSignature)-1] ^= 1
		}, "not a TPM-generated restricted signing key"},
		{"creation attestation of another key", func(id *Identity) {
			id.AK.CreateData = append(bytes.Clone(id.AK.CreateData), 0)
		}, "not a TPM-generated restricted signing key"},
		{"not restricted", unrestricted, "not a restricted sha256 signing key"},
		{"EK not a key", func(id *Identity) { id.EKPublic = []byte("EK") }, "EK public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := n.id
			tc.tamper(&id)
			_, _, err := NewChallenge(id)
			assertRefused(t, err, CheckAKBinding, tc.detail)
		})
	}
}

// The EK policy admits a registered EK, an EK certificate from a configured
// CA, or anything while the window is open, and refuses the rest with the
// reason for each way.
func TestCheckEK(t *testing.T) {
	foreign := otherEK(t)
	ca, otherCA := newTestCA(t, "TPM vendor CA"), newTestCA(t, "another CA")

	boot := ovmfEvents(t)
	sim := simTPM(t, seedNode)
	measureBoot(t, sim, boot)
	// Read the EK, then give the TPM a certificate for it, as
	// swtpm_setup --create-ek-cert does, and start the node again.
	p, err := NewProver(attesttest.NoClose(sim), nil)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := p.Identity()
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	writeEKCert(t, sim, ca.ekCert(t, plain.EKPublic))
	p, err = NewProver(sim, encodeTCGLog(t, boot))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	withCert, err := p.Identity()
	if err != nil {
		t.Fatal(err)
	}
	if len(withCert.EKCertificate) == 0 || !bytes.Equal(withCert.EKPublic, plain.EKPublic) {
		t.Fatalf("identity with NV EK certificate: cert %d bytes, same EK %v", len(withCert.EKCertificate), bytes.Equal(withCert.EKPublic, plain.EKPublic))
	}
	// The certified node still activates and quotes.
	ch, secret, err := NewChallenge(withCert)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := p.ActivateCredential(ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyActivation(secret, answer); err != nil {
		t.Fatal(err)
	}

	hash := EKHash(withCert.EKPublic)
	foreignCert := withCert
	foreignCert.EKCertificate = ca.ekCert(t, foreign)
	oddCert := withCert
	oddCert.EKCertificate = ca.ekCert(t, withCert.EKPublic, pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}})

	for _, tc := range []struct {
		name    string
		id      Identity
		policy  EKPolicy
		want    EKAdmission
		details []string // refusal detail, when refused
	}{
		{"registered", plain, EKPolicy{Registered: []string{"00", strings.ToUpper(hash)}}, EKRegistered, nil},
		{"certificate from the configured CA", withCert, EKPolicy{CAs: ca.pool()}, EKCertificate, nil},
		{"window open", plain, EKPolicy{WindowOpen: true}, EKWindow, nil},
		{"unknown EK under the registered policy", plain, EKPolicy{Registered: []string{EKHash(foreign)}},
			"", []string{hash + " is not registered (1 registered)", "no EK certificate", "window is closed"}},
		{"EK certificate from another CA", withCert, EKPolicy{CAs: otherCA.pool()},
			"", []string{"does not chain to a configured CA", `issuer "CN=TPM vendor CA"`}},
		{"EK certificate for another TPM's EK", foreignCert, EKPolicy{CAs: ca.pool()},
			"", []string{"is for another key (sha256 " + EKHash(foreign) + ")"}},
		{"EK certificate with an unknown critical extension", oddCert, EKPolicy{CAs: ca.pool()},
			"", []string{"unhandled critical extension"}},
		{"certificate but no CA configured", withCert, EKPolicy{}, "", []string{"no EK certificate CA configured"}},
		{"EK not PKIX", Identity{EKPublic: []byte{0x30, 0}}, EKPolicy{WindowOpen: true}, "", []string{"EK public key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AdmitEK(tc.id, tc.policy)
			if tc.details == nil {
				if err != nil || got != tc.want {
					t.Fatalf("AdmitEK = %q, %v; want %q", got, err, tc.want)
				}
				if CheckEK(tc.id, tc.policy) != nil {
					t.Error("CheckEK refuses what AdmitEK admits")
				}
				return
			}
			r := assertRefused(t, err, CheckEKPolicy, tc.details...)
			t.Logf("%s", r.Detail)
			assertRefused(t, CheckEK(tc.id, tc.policy), CheckEKPolicy)
		})
	}
}

func readPEM(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A real EK certificate that swtpm_setup --create-ek-cert wrote (swtpm 0.7.1,
// its local CA; testdata/swtpm) chains to the local CA: its critical
// directoryName-only SAN is accepted, and the TCG EK key purpose too.
func TestCheckEKSwtpmCertificate(t *testing.T) {
	ek := readPEM(t, "testdata/swtpm/ek-cert.pem")
	root, issuer := readPEM(t, "testdata/swtpm/localca-root.pem"), readPEM(t, "testdata/swtpm/localca-issuer.pem")
	if len(ek.UnhandledCriticalExtensions) != 1 || !ek.UnhandledCriticalExtensions[0].Equal(oidSubjectAltName) {
		t.Fatalf("fixture's unhandled critical extensions: %v", ek.UnhandledCriticalExtensions)
	}
	pub, err := x509.MarshalPKIXPublicKey(ek.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	id := Identity{EKPublic: pub, EKCertificate: ek.Raw}
	pool := func(cs ...*x509.Certificate) *x509.CertPool {
		p := x509.NewCertPool()
		for _, c := range cs {
			p.AddCert(c)
		}
		return p
	}
	if got, err := AdmitEK(id, EKPolicy{CAs: pool(root, issuer)}); err != nil || got != EKCertificate {
		t.Fatalf("swtpm local CA: %q, %v", got, err)
	}
	if got, err := AdmitEK(id, EKPolicy{CAs: pool(issuer)}); err != nil || got != EKCertificate {
		t.Fatalf("swtpm issuing CA alone: %q, %v", got, err)
	}
	// The root alone is not enough: the identity carries no intermediates.
	assertRefused(t, CheckEK(id, EKPolicy{CAs: pool(root)}), CheckEKPolicy, "does not chain")
}
