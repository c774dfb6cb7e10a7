package sign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Detached artifact signatures (manifests, the darksite repo index) are a
// small text file, so they diff and travel well:
//
//	kubedos-signature v1
//	algorithm: ed25519
//	key-id: sha256:<hex SHA-256 of the signer's PKIX public key DER>
//	signature: <standard base64 of the 64-byte ed25519 signature>
//
// Exactly these four lines, in this order, each ending in "\n". The
// signature is plain ed25519 over the artifact's bytes (no prefix, no
// pre-hash), so anyone can check it with stock tools, e.g.
// `openssl pkeyutl -verify -pubin -inkey signing.pub -rawin`. The key-id
// only names the key, so a verifier can say which key signed; trust comes
// from the key the verifier holds, never from the file.
const sigMagic = "kubedos-signature v1"

// KeyID names an ed25519 public key as it appears in signature files.
func KeyID(pub ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil { // only for a wrong-length key
		return "invalid"
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// SignBlob signs data with the artifact key and returns the detached
// signature file's contents. Deterministic: ed25519 needs no randomness.
func SignBlob(key ed25519.PrivateKey, data []byte) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: ed25519 private key is %d bytes, want %d", ErrBadKeyFile, len(key), ed25519.PrivateKeySize)
	}
	sig := ed25519.Sign(key, data)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nalgorithm: ed25519\nkey-id: %s\nsignature: %s\n",
		sigMagic, KeyID(key.Public().(ed25519.PublicKey)), base64.StdEncoding.EncodeToString(sig))
	return b.Bytes(), nil
}

// VerifyBlob checks a detached signature file sig over data against pub. A
// malformed file or a signature that does not verify wraps ErrBadSignature;
// a well-formed signature by another key wraps ErrUntrusted.
func VerifyBlob(pub ed25519.PublicKey, data, sig []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: ed25519 public key is %d bytes, want %d", ErrBadKeyFile, len(pub), ed25519.PublicKeySize)
	}
	keyID, raw, err := parseSigFile(sig)
	if err != nil {
		return err
	}
	if want := KeyID(pub); keyID != want {
		return fmt.Errorf("%w: signed by key %s, trusted key is %s", ErrUntrusted, keyID, want)
	}
	if !ed25519.Verify(pub, data, raw) {
		return fmt.Errorf("%w: ed25519 signature by %s does not match the data", ErrBadSignature, keyID)
	}
	return nil
}

func parseSigFile(sig []byte) (keyID string, raw []byte, err error) {
	lines := strings.Split(string(sig), "\n")
	if len(lines) != 5 || lines[4] != "" {
		return "", nil, fmt.Errorf("%w: signature file must be 4 lines ending in a newline", ErrBadSignature)
	}
	if lines[0] != sigMagic {
		return "", nil, fmt.Errorf("%w: line 1 is %q, want %q", ErrBadSignature, lines[0], sigMagic)
	}
	fields := map[string]string{}
	for i, want := range []string{"algorithm", "key-id", "signature"} {
		k, v, ok := strings.Cut(lines[i+1], ": ")
		if !ok || k != want {
			return "", nil, fmt.Errorf("%w: line %d must be %q", ErrBadSignature, i+2, want+": ...")
		}
		fields[k] = v
	}
	if fields["algorithm"] != "ed25519" {
		return "", nil, fmt.Errorf("%w: algorithm %q, want ed25519", ErrBadSignature, fields["algorithm"])
	}
	raw, err = base64.StdEncoding.Strict().DecodeString(fields["signature"])
	if err != nil || len(raw) != ed25519.SignatureSize {
		return "", nil, fmt.Errorf("%w: signature is not base64 of %d bytes", ErrBadSignature, ed25519.SignatureSize)
	}
	return fields["key-id"], raw, nil
}
