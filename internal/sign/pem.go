package sign

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

func encodeCertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// encodeKeyPEM writes every private key as PKCS#8, the one form OpenSSL
// tools (sbsign, sign-efi-sig-list) and Go both read for RSA, ECDSA and
// ed25519 alike.
func encodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func encodePublicPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// readPEM reads the single PEM block of type typ in path.
func readPEM(path, typ string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKeyFile, err)
	}
	block, rest := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%w: %s: no PEM block", ErrBadKeyFile, path)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("%w: %s: PEM block is %q, want %q", ErrBadKeyFile, path, block.Type, typ)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: %s: data after the PEM block", ErrBadKeyFile, path)
	}
	return block.Bytes, nil
}

// ReadCertificate reads one PEM certificate.
func ReadCertificate(path string) (*x509.Certificate, error) {
	der, err := readPEM(path, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadKeyFile, path, err)
	}
	return c, nil
}

// ReadPrivateKey reads one PKCS#8 PEM private key.
func ReadPrivateKey(path string) (crypto.Signer, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadKeyFile, path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %s: key type %T cannot sign", ErrBadKeyFile, path, k)
	}
	return s, nil
}

// ReadSigningKey reads the ed25519 artifact signing key (PKCS#8 PEM).
func ReadSigningKey(path string) (ed25519.PrivateKey, error) {
	k, err := ReadPrivateKey(path)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s: key is %T, want ed25519", ErrBadKeyFile, path, k)
	}
	return ek, nil
}

// readPublicKey reads a PKIX PEM public key.
func readPublicKey(path string) (any, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadKeyFile, path, err)
	}
	return k, nil
}

// ReadVerifyKey reads the ed25519 artifact public key (PKIX PEM).
func ReadVerifyKey(path string) (ed25519.PublicKey, error) {
	k, err := readPublicKey(path)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s: key is %T, want ed25519", ErrBadKeyFile, path, k)
	}
	return ek, nil
}
