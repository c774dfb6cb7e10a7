package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"time"
)

// ReaderName is the CN of the reader certificate the hub issues the
// prometheus node to scrape with: "prometheus@<node>", so the audit log
// and every node's API log say which node's Prometheus read them, and no
// operator name ("<name> (reader)") or node actor ("node:<name>") looks
// the same.
func ReaderName(node string) string { return "prometheus@" + node }

// SignReaderCSR certifies the key of csrDER as ReaderName(node) with role
// reader: client auth only, for lifetime from now. The CSR contributes its
// public key and nothing else (the subject is set here), so a node cannot
// ask for more than reading; its signature and key type are checked.
func (ca *CA) SignReaderCSR(csrDER []byte, node string, lifetime time.Duration, now time.Time) (*x509.Certificate, error) {
	if err := CheckName("node name", node); err != nil {
		return nil, err
	}
	csr, err := parseCSR(csrDER, "reader for "+node)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: ReaderName(node), Organization: []string{RoleReader.Org()}},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	return ca.issue(tmpl, csr.PublicKey, lifetime, now)
}
