// Package tpmseal seals a secret to a node's TPM under the policy kubedos
// uses for everything a node keeps at rest (the state partition's key, the
// master's CA key): PCR 7 as it was when sealed, and PCR 11 holding a value
// the platform's PCR policy key signed.
//
// PCR 7 (Secure Boot state, keys, and the db certificate that let the UKI
// run) alone cannot tell one UKI signed with the db key from another; PCR 11
// (systemd-stub's measurement of the UKI's sections) can, but changes with
// every build. TPM2_PolicyAuthorize joins the two: the sealed object's policy
// names the PCR policy key instead of a PCR 11 value, and each build signs
// the PCR 11 values its UKI produces (systemd-measure's model, its
// tpm2-pcr-signature.json format). A signed upgrade or a rollback keeps
// unlocking; a UKI the key never signed does not, even when the firmware runs
// it.
package tpmseal

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/kubedos/kubedos/internal/boundedio"
)

// PCRKernelImage is the PCR whose values are signed (systemd-stub's).
const PCRKernelImage = 11

// PCRSecureBoot is the PCR bound literally at sealing time.
const PCRSecureBoot = 7

// MaxSignatureFile bounds the signature file read from the UKI: a handful
// of entries, each well under 1 KiB.
const MaxSignatureFile = 64 << 10

// maxEntries bounds the entries a signature file may list.
const maxEntries = 32

// ErrInput marks a malformed key, signature file or blob.
var ErrInput = errors.New("tpmseal")

// PublicKey parses the PEM (PKIX "PUBLIC KEY") of an RSA PCR policy key.
// RSA because the TPM's TPM2_VerifySignature has no Ed25519, and PKCS #1
// v1.5 signatures are deterministic, so a rebuild signs the same bytes.
func PublicKey(pemBytes []byte) (*rsa.PublicKey, error) {
	b, _ := pem.Decode(pemBytes)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: PCR policy key: not a PEM PUBLIC KEY", ErrInput)
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: PCR policy key: %w", ErrInput, err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: PCR policy key is %T, want RSA", ErrInput, k)
	}
	if pub.N.BitLen() != 2048 || pub.E != 65537 {
		return nil, fmt.Errorf("%w: PCR policy key is RSA-%d e=%d, want RSA-2048 e=65537", ErrInput, pub.N.BitLen(), pub.E)
	}
	return pub, nil
}

// EncodePublicKey is PublicKey's inverse.
func EncodePublicKey(pub *rsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// Fingerprint is the key's "pkfp" in a signature file: SHA-256 of its
// PKCS #1 RSAPublicKey DER, as systemd computes it (OpenSSL's
// i2d_PublicKey; TestSignMatchesSystemdMeasure holds us to it).
func Fingerprint(pub *rsa.PublicKey) string {
	if pub == nil {
		return ""
	}
	s := sha256.Sum256(x509.MarshalPKCS1PublicKey(pub))
	return hex.EncodeToString(s[:])
}

// keyPublic is the TPM's view of the PCR policy key as loaded with
// TPM2_LoadExternal. Its name (nameAlg ‖ SHA-256 of this structure) is what
// a sealed object's policy binds, so it must never change.
func keyPublic(pub *rsa.PublicKey) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgRSA,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			SignEncrypt:  true,
			UserWithAuth: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Scheme:  tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
			KeyBits: 2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: pub.N.FillBytes(make([]byte, 256))}),
	}
}

// KeyName is the TPM name of the PCR policy key.
func KeyName(pub *rsa.PublicKey) ([]byte, error) {
	p := keyPublic(pub)
	n, err := tpm2.ObjectName(&p)
	if err != nil {
		return nil, err
	}
	return n.Buffer, nil
}

// selection is a TPML_PCR_SELECTION of one sha256 PCR.
func selection(pcr int) tpm2.TPMLPCRSelection {
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(uint(pcr)),
	}}}
}

// PCRPolicy is the TPM2_PolicyPCR digest, from an empty policy, for one
// sha256 PCR holding value: what the PCR policy key signs for PCR 11.
func PCRPolicy(pcr int, value []byte) ([]byte, error) {
	if len(value) != sha256.Size {
		return nil, fmt.Errorf("%w: PCR %d value is %d bytes, want %d", ErrInput, pcr, len(value), sha256.Size)
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	d := sha256.Sum256(value)
	if err := (tpm2.PolicyPCR{Pcrs: selection(pcr), PcrDigest: tpm2.TPM2BDigest{Buffer: d[:]}}).Update(calc); err != nil {
		return nil, err
	}
	return calc.Hash().Digest, nil
}

// SealPolicy is the authPolicy of a sealed object: TPM2_PolicyAuthorize by
// the PCR policy key (empty policyRef), then TPM2_PolicyPCR on PCR 7 with
// pcr7, its value at sealing.
func SealPolicy(pub *rsa.PublicKey, pcr7 []byte) ([]byte, error) {
	if len(pcr7) != sha256.Size {
		return nil, fmt.Errorf("%w: PCR 7 value is %d bytes, want %d", ErrInput, len(pcr7), sha256.Size)
	}
	name, err := KeyName(pub)
	if err != nil {
		return nil, err
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyAuthorize{KeySign: tpm2.TPM2BName{Buffer: name}}).Update(calc); err != nil {
		return nil, err
	}
	d := sha256.Sum256(pcr7)
	if err := (tpm2.PolicyPCR{Pcrs: selection(PCRSecureBoot), PcrDigest: tpm2.TPM2BDigest{Buffer: d[:]}}).Update(calc); err != nil {
		return nil, err
	}
	return calc.Hash().Digest, nil
}

// Entry is one signed PCR policy, as systemd-measure writes it.
type Entry struct {
	PCRs []int  `json:"pcrs"`
	PKFP string `json:"pkfp"` // Fingerprint of the signing key
	Pol  string `json:"pol"`  // the approved TPM2_PolicyPCR digest, hex
	Sig  string `json:"sig"`  // RSASSA-PKCS1-v1_5 SHA-256 over Pol's bytes, base64
}

// Signatures is a tpm2-pcr-signature.json: entries per PCR bank.
type Signatures struct {
	SHA256 []Entry `json:"sha256"`
}

// Sign signs the PCR 11 policy of each value with key: the file a UKI
// carries in its .pcrsig section. The signature is over SHA-256 of the
// approved policy digest (aHash with an empty policyRef), deterministic.
func Sign(key *rsa.PrivateKey, pcr11 [][]byte) (Signatures, error) {
	var out Signatures
	fp := Fingerprint(&key.PublicKey)
	for _, v := range pcr11 {
		pol, err := PCRPolicy(PCRKernelImage, v)
		if err != nil {
			return Signatures{}, err
		}
		h := sha256.Sum256(pol)
		sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, h[:])
		if err != nil {
			return Signatures{}, fmt.Errorf("sign PCR 11 policy: %w", err)
		}
		out.SHA256 = append(out.SHA256, Entry{PCRs: []int{PCRKernelImage}, PKFP: fp, Pol: hex.EncodeToString(pol), Sig: base64.StdEncoding.EncodeToString(sig)})
	}
	return out, nil
}

// Marshal renders the file as the UKI carries it.
func (s Signatures) Marshal() ([]byte, error) { return json.Marshal(s) }

// ParseSignatures reads a signature file strictly: bounded size and entry
// count, well-formed hex and base64. It does not check signatures (the TPM
// does, and Verify does for a build).
func ParseSignatures(raw []byte) (Signatures, error) {
	var s Signatures
	if len(raw) > MaxSignatureFile {
		return s, fmt.Errorf("%w: PCR signature file is %d bytes, at most %d", ErrInput, len(raw), MaxSignatureFile)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("%w: PCR signature file: %v", ErrInput, err)
	}
	if len(s.SHA256) == 0 || len(s.SHA256) > maxEntries {
		return s, fmt.Errorf("%w: PCR signature file has %d sha256 entries, want 1..%d", ErrInput, len(s.SHA256), maxEntries)
	}
	for i, e := range s.SHA256 {
		if len(e.PCRs) != 1 || e.PCRs[0] != PCRKernelImage {
			return s, fmt.Errorf("%w: PCR signature entry %d signs PCRs %v, want [11]", ErrInput, i, e.PCRs)
		}
		if p, err := hex.DecodeString(e.Pol); err != nil || len(p) != sha256.Size {
			return s, fmt.Errorf("%w: PCR signature entry %d: pol is not a SHA-256 digest in hex", ErrInput, i)
		}
		if sig, err := base64.StdEncoding.DecodeString(e.Sig); err != nil || len(sig) != 256 {
			return s, fmt.Errorf("%w: PCR signature entry %d: sig is not an RSA-2048 signature in base64", ErrInput, i)
		}
	}
	return s, nil
}

// For returns the entry approving PCR 11 = value by pub, if any.
func (s Signatures) For(pub *rsa.PublicKey, value []byte) (Entry, []byte, bool) {
	pol, err := PCRPolicy(PCRKernelImage, value)
	if err != nil {
		return Entry{}, nil, false
	}
	fp, want := Fingerprint(pub), hex.EncodeToString(pol)
	for _, e := range s.SHA256 {
		if e.PKFP == fp && e.Pol == want {
			return e, pol, true
		}
	}
	return Entry{}, pol, false
}

// Verify checks every entry's signature with pub in Go (the build's and
// `kubedos verify`'s check; a node lets its TPM check) and returns the
// approved policy digests.
func (s Signatures) Verify(pub *rsa.PublicKey) ([][]byte, error) {
	var pols [][]byte
	for i, e := range s.SHA256 {
		if e.PKFP != Fingerprint(pub) {
			return nil, fmt.Errorf("%w: PCR signature entry %d is by key %.16s…, not the PCR policy key %.16s…", ErrInput, i, e.PKFP, Fingerprint(pub))
		}
		pol, _ := hex.DecodeString(e.Pol)
		sig, _ := base64.StdEncoding.DecodeString(e.Sig)
		h := sha256.Sum256(pol)
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig); err != nil {
			return nil, fmt.Errorf("%w: PCR signature entry %d does not verify: %v", ErrInput, i, err)
		}
		pols = append(pols, pol)
	}
	return pols, nil
}

// exponentOK guards the one RSA parameter keyPublic leaves implicit.
func exponentOK(pub *rsa.PublicKey) bool {
	return pub != nil && pub.N != nil && pub.E == 65537 && pub.N.Cmp(big.NewInt(0)) > 0
}

// Policy is a UKI's signed PCR policy as a node holds it: the PCR policy
// key (its .pcrpkey) and the signatures of its PCR 11 values (its .pcrsig).
type Policy struct {
	Key        *rsa.PublicKey
	Signatures Signatures
}

// ErrNoPolicy: the UKI carried no signed PCR policy.
var ErrNoPolicy = errors.New("the UKI carries no signed PCR policy (.pcrpkey/.pcrsig)")

// ReadPolicy reads a policy from the files systemd-stub makes of a UKI's
// .pcrpkey and .pcrsig (ErrNoPolicy when either is absent).
func ReadPolicy(keyFile, sigFile string) (Policy, error) {
	pemBytes, err := readPolicyFile(keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return Policy{}, ErrNoPolicy
	}
	if err != nil {
		return Policy{}, err
	}
	key, err := PublicKey(pemBytes)
	if err != nil {
		return Policy{}, fmt.Errorf("%s: %w", keyFile, err)
	}
	raw, err := readPolicyFile(sigFile)
	if errors.Is(err, fs.ErrNotExist) {
		return Policy{}, ErrNoPolicy
	}
	if err != nil {
		return Policy{}, err
	}
	sigs, err := ParseSignatures(bytes.TrimRight(raw, "\x00"))
	if err != nil {
		return Policy{}, fmt.Errorf("%s: %w", sigFile, err)
	}
	return Policy{Key: key, Signatures: sigs}, nil
}

// readPolicyFile reads .pcrpkey or .pcrsig as systemd-stub left it; one
// over MaxSignatureFile is ErrInput.
func readPolicyFile(path string) ([]byte, error) {
	b, err := boundedio.ReadFile(path, MaxSignatureFile)
	if errors.Is(err, boundedio.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	return b, err
}
