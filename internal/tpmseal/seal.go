package tpmseal

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ErrRefused means the TPM would not give the secret back: another TPM, PCR
// 7 changed, or PCR 11 holds a value the PCR policy key did not sign.
var ErrRefused = errors.New("the TPM refused to unseal")

// ErrNotSigned means PCR 11 holds a value no entry of the signature file
// approves: the running UKI is not one the PCR policy key signed.
var ErrNotSigned = errors.New("PCR 11 is not a value the PCR policy key signed")

// blobMagic starts a sealed blob: public and private areas of the sealed
// object, each a TPM2B, then nothing.
const blobMagic = "KDTPMS1\x00"

// MaxBlob bounds a sealed blob (an ECC-SRK child with a 64-byte secret is
// about 250 bytes).
const MaxBlob = 2048

// IsBlob reports whether b is a blob Seal made (as opposed to an older
// format a caller may still hold).
func IsBlob(b []byte) bool { return bytes.HasPrefix(b, []byte(blobMagic)) }

// srk makes the TPM's ECC storage root key (deterministic from the owner
// seed, so the same at every boot) and returns its handle and name.
func srk(t transport.TPM) (*tpm2.CreatePrimaryResponse, error) {
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("TPM storage root key: %w", err)
	}
	return rsp, nil
}

func flush(t transport.TPM, h tpm2.TPMHandle) { _, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t) }

// readPCR reads one sha256 PCR.
func readPCR(t transport.TPM, pcr int) ([]byte, error) {
	rsp, err := tpm2.PCRRead{PCRSelectionIn: selection(pcr)}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("read PCR %d: %w", pcr, err)
	}
	if len(rsp.PCRValues.Digests) != 1 || len(rsp.PCRValues.Digests[0].Buffer) != sha256.Size {
		return nil, fmt.Errorf("read PCR %d: the TPM has no sha256 bank for it", pcr)
	}
	return rsp.PCRValues.Digests[0].Buffer, nil
}

// Seal seals secret (at most 128 bytes) under this TPM's storage root key
// to SealPolicy(pub, current PCR 7). Only this TPM can load the blob, and it
// unseals only with PCR 7 unchanged and PCR 11 signed by pub's key. It
// refuses (ErrNotSigned) when the current PCR 11 has no entry in sigs by
// pub: the running UKI could never unseal what it sealed.
func Seal(rw io.ReadWriter, secret []byte, pub *rsa.PublicKey, sigs Signatures) ([]byte, error) {
	if len(secret) == 0 || len(secret) > 128 {
		return nil, fmt.Errorf("%w: secret is %d bytes, want 1..128", ErrInput, len(secret))
	}
	if !exponentOK(pub) {
		return nil, fmt.Errorf("%w: no usable PCR policy key", ErrInput)
	}
	t := transport.FromReadWriter(rw)
	if err := checkSigned(t, pub, sigs); err != nil {
		return nil, err
	}
	pcr7, err := readPCR(t, PCRSecureBoot)
	if err != nil {
		return nil, err
	}
	policy, err := SealPolicy(pub, pcr7)
	if err != nil {
		return nil, err
	}
	root, err := srk(t)
	if err != nil {
		return nil, err
	}
	defer flush(t, root.ObjectHandle)
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.NamedHandle{Handle: root.ObjectHandle, Name: root.Name},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		// No userWithAuth: the policy is the only way in. noDA: a wrong
		// PCR must not lock the TPM out for the node's other keys.
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgKeyedHash,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, NoDA: true},
			AuthPolicy:       tpm2.TPM2BDigest{Buffer: policy},
			Parameters:       tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull}}),
		}),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("seal to the TPM: %w", err)
	}
	pubArea, privArea := tpm2.Marshal(rsp.OutPublic), tpm2.Marshal(rsp.OutPrivate)
	var b bytes.Buffer
	b.WriteString(blobMagic)
	for _, part := range [][]byte{pubArea, privArea} {
		_ = binary.Write(&b, binary.BigEndian, uint16(len(part)))
		b.Write(part)
	}
	if b.Len() > MaxBlob {
		return nil, fmt.Errorf("sealed blob is %d bytes, at most %d", b.Len(), MaxBlob)
	}
	return b.Bytes(), nil
}

// parseBlob splits a blob into the sealed object's public and private areas.
func parseBlob(b []byte) (tpm2.TPM2BPublic, tpm2.TPM2BPrivate, error) {
	var pub tpm2.TPM2BPublic
	var priv tpm2.TPM2BPrivate
	if len(b) > MaxBlob || !IsBlob(b) {
		return pub, priv, fmt.Errorf("%w: not a sealed blob", ErrInput)
	}
	rest := b[len(blobMagic):]
	var parts [2][]byte
	for i := range parts {
		if len(rest) < 2 {
			return pub, priv, fmt.Errorf("%w: sealed blob truncated", ErrInput)
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+n {
			return pub, priv, fmt.Errorf("%w: sealed blob truncated", ErrInput)
		}
		parts[i], rest = rest[2:2+n], rest[2+n:]
	}
	if len(rest) != 0 {
		return pub, priv, fmt.Errorf("%w: %d stray bytes after the sealed blob", ErrInput, len(rest))
	}
	p, err := tpm2.Unmarshal[tpm2.TPM2BPublic](parts[0])
	if err != nil {
		return pub, priv, fmt.Errorf("%w: sealed blob public area: %v", ErrInput, err)
	}
	q, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](parts[1])
	if err != nil {
		return pub, priv, fmt.Errorf("%w: sealed blob private area: %v", ErrInput, err)
	}
	return *p, *q, nil
}

// attempts bounds the retries when a PCR moves during an unseal:
// systemd-pcrphase extends PCR 11 a few times per boot, and the TPM refuses
// a policy session whose PCRs changed under it (TPM_RC_PCR_CHANGED).
const attempts = 5

// Unseal gives back what Seal sealed, when this TPM holds the blob's
// parent, PCR 7 is as sealed and the current PCR 11 has a signed entry in
// sigs by pub. ErrNotSigned: no entry for this PCR 11 (checked before the
// TPM is asked); ErrRefused: the TPM said no.
func Unseal(rw io.ReadWriter, blob []byte, pub *rsa.PublicKey, sigs Signatures) ([]byte, error) {
	if !exponentOK(pub) {
		return nil, fmt.Errorf("%w: no usable PCR policy key", ErrInput)
	}
	objPub, objPriv, err := parseBlob(blob)
	if err != nil {
		return nil, err
	}
	t := transport.FromReadWriter(rw)
	var last error
	for range attempts {
		pcr11, err := readPCR(t, PCRKernelImage)
		if err != nil {
			return nil, err
		}
		secret, err := unsealOnce(t, objPub, objPriv, pub, sigs, pcr11)
		if err == nil {
			return secret, nil
		}
		last = err
		now, rerr := readPCR(t, PCRKernelImage)
		if rerr != nil {
			return nil, rerr
		}
		if bytes.Equal(now, pcr11) && !errors.Is(err, tpm2.TPMRCPCRChanged) {
			return nil, err // not a race: the answer will not change
		}
	}
	return nil, last
}

// checkSigned says whether the current PCR 11 has an entry in sigs by pub
// (ErrNotSigned if not), without touching any sealed object.
func checkSigned(t transport.TPM, pub *rsa.PublicKey, sigs Signatures) error {
	v, err := readPCR(t, PCRKernelImage)
	if err != nil {
		return err
	}
	if _, _, ok := sigs.For(pub, v); !ok {
		return fmt.Errorf("%w (PCR 11 %x, %d signed values)", ErrNotSigned, v, len(sigs.SHA256))
	}
	return nil
}

func unsealOnce(t transport.TPM, objPub tpm2.TPM2BPublic, objPriv tpm2.TPM2BPrivate, pub *rsa.PublicKey, sigs Signatures, pcr11 []byte) ([]byte, error) {
	entry, approved, ok := sigs.For(pub, pcr11)
	if !ok {
		return nil, fmt.Errorf("%w (PCR 11 %x, %d signed values)", ErrNotSigned, pcr11, len(sigs.SHA256))
	}
	sig, err := base64.StdEncoding.DecodeString(entry.Sig)
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrInput, err)
	}
	// One object at a time: under the kernel's resource manager
	// (/dev/tpmrm0) every command swaps each loaded object and session in and
	// out, so each is flushed as soon as it has served.
	//
	// The owner hierarchy, not the null one: a ticket from a key in the null
	// hierarchy is a NULL ticket, which TPM2_PolicyAuthorize rejects.
	key, err := tpm2.LoadExternal{InPublic: tpm2.New2B(keyPublic(pub)), Hierarchy: tpm2.TPMRHOwner}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("load the PCR policy key into the TPM: %w", err)
	}
	aHash := sha256.Sum256(approved) // policyRef is empty
	ver, err := tpm2.VerifySignature{
		KeyHandle: key.ObjectHandle,
		Digest:    tpm2.TPM2BDigest{Buffer: aHash[:]},
		Signature: tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSASSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA,
			&tpm2.TPMSSignatureRSA{Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: sig}})},
	}.Execute(t)
	flush(t, key.ObjectHandle)
	if err != nil {
		return nil, fmt.Errorf("%w: the TPM refused the PCR 11 signature: %v", ErrRefused, err)
	}
	root, err := srk(t)
	if err != nil {
		return nil, err
	}
	obj, err := tpm2.Load{ParentHandle: tpm2.NamedHandle{Handle: root.ObjectHandle, Name: root.Name}, InPrivate: objPriv, InPublic: objPub}.Execute(t)
	flush(t, root.ObjectHandle)
	if err != nil {
		return nil, fmt.Errorf("%w: this sealed blob does not load under this TPM's storage root key (another TPM): %v", ErrRefused, err)
	}
	defer flush(t, obj.ObjectHandle)
	sess, closeSess, err := tpm2.PolicySession(t, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return nil, fmt.Errorf("TPM policy session: %w", err)
	}
	defer func() { _ = closeSess() }()
	if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: selection(PCRKernelImage)}).Execute(t); err != nil {
		return nil, fmt.Errorf("%w: PolicyPCR 11: %w", ErrRefused, err)
	}
	if _, err := (tpm2.PolicyAuthorize{PolicySession: sess.Handle(), ApprovedPolicy: tpm2.TPM2BDigest{Buffer: approved},
		KeySign: key.Name, CheckTicket: ver.Validation}).Execute(t); err != nil {
		return nil, fmt.Errorf("%w: PolicyAuthorize (PCR 11 moved meanwhile?): %w", ErrRefused, err)
	}
	if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: selection(PCRSecureBoot)}).Execute(t); err != nil {
		return nil, fmt.Errorf("%w: PolicyPCR 7: %w", ErrRefused, err)
	}
	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: obj.ObjectHandle, Name: obj.Name, Auth: sess}}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("%w (PCR 7 differs from when it was sealed: Secure Boot or its keys changed): %w", ErrRefused, err)
	}
	return rsp.OutData.Buffer, nil
}
