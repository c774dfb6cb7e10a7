package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// Files of the cluster CA inside a key directory, as `kubedos keys init`
// writes them (sign.FileCAKey, sign.FileCACert; a test keeps them equal).
const (
	CAKeyFile  = "ca/ca.key"
	CACertFile = "ca/ca.crt"
)

// Backdate is how far before the issuing time a certificate starts, so a
// peer whose clock is a little behind still accepts it.
const Backdate = time.Minute

// CA is the cluster certificate authority: its certificate and private key.
// It is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	pool    *x509.CertPool
}

// LoadCA reads the cluster CA from a key directory made by `kubedos keys
// init`. A public-only copy of the keys (no ca/ca.key) cannot sign and is
// refused. Errors wrap ErrBadCA and name the file.
func LoadCA(keysDir string) (*CA, error) {
	certPath := filepath.Join(keysDir, filepath.FromSlash(CACertFile))
	keyPath := filepath.Join(keysDir, filepath.FromSlash(CAKeyFile))
	der, err := readPEM(certPath, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadCA, certPath, err)
	}
	der, err = readPEM(keyPath, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadCA, keyPath, err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %s: key type %T cannot sign", ErrBadCA, keyPath, k)
	}
	ca, err := NewCA(cert, key)
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", certPath, keyPath, err)
	}
	return ca, nil
}

// NewCA makes a CA from a certificate and its private key. The certificate
// must be a CA allowed to sign certificates and the key must match it.
func NewCA(cert *x509.Certificate, key crypto.Signer) (*CA, error) {
	if cert == nil || key == nil {
		return nil, fmt.Errorf("%w: certificate and key are required", ErrBadCA)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: %q is not a CA certificate allowed to sign certificates", ErrBadCA, cert.Subject.CommonName)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: private key does not match the certificate of %q", ErrBadCA, cert.Subject.CommonName)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		pool:    pool,
	}, nil
}

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA certificate in PEM, for nodes and clients to trust.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// Pool returns a pool holding only the CA certificate, for tls.Config's
// RootCAs and ClientCAs.
func (ca *CA) Pool() *x509.CertPool { return ca.pool.Clone() }

// issue signs tmpl for pub with a fresh serial, valid from now-Backdate for
// lifetime and never past the CA's own NotAfter.
func (ca *CA) issue(tmpl *x509.Certificate, pub crypto.PublicKey, lifetime time.Duration, now time.Time) (*x509.Certificate, error) {
	if lifetime <= 0 {
		return nil, fmt.Errorf("%w: lifetime %v must be positive", ErrInvalid, lifetime)
	}
	if now.IsZero() {
		return nil, fmt.Errorf("%w: issuing time is zero", ErrInvalid)
	}
	if !now.Before(ca.cert.NotAfter) {
		return nil, fmt.Errorf("%w: CA %q expired at %s", ErrBadCA, ca.cert.Subject.CommonName, ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-Backdate)
	tmpl.NotAfter = now.Add(lifetime)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	return cert, nil
}

// NewSerial returns a random, positive, non-zero 128-bit serial number
// (RFC 5280 allows up to 20 octets; CAs are asked for at least 64 random bits).
func NewSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}

// readPEM reads the single PEM block of type typ in path.
func readPEM(path, typ string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCA, err)
	}
	block, rest := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%w: %s: no PEM block", ErrBadCA, path)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("%w: %s: PEM block is %q, want %q", ErrBadCA, path, block.Type, typ)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: %s: data after the PEM block", ErrBadCA, path)
	}
	return block.Bytes, nil
}
