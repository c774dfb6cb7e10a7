package pki

import (
	"crypto/x509"
	"fmt"
	"math/big"
	"slices"
	"sync"
)

// SerialString is the canonical text of a serial number: lower-case hex,
// no leading zeros. The hub stores serials in this form.
func SerialString(n *big.Int) string { return n.Text(16) }

// ParseSerial reads SerialString's form back.
func ParseSerial(s string) (*big.Int, error) {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 || SerialString(n) != s {
		return nil, fmt.Errorf("%w: serial %q is not lower-case hex without leading zeros", ErrInvalid, s)
	}
	return n, nil
}

// Revocations is the set of revoked certificate serials. Every certificate
// the CA issues has a distinct random serial, so the serial alone names it.
// It is safe for concurrent use: the hub adds to it while TLS handshakes
// check against it.
type Revocations struct {
	mu  sync.RWMutex
	set map[string]struct{}
}

// NewRevocations returns a set holding serials (SerialString form).
func NewRevocations(serials ...string) (*Revocations, error) {
	r := &Revocations{set: make(map[string]struct{}, len(serials))}
	if err := r.Add(serials...); err != nil {
		return nil, err
	}
	return r, nil
}

// Add revokes serials (SerialString form). It adds none if one is malformed.
func (r *Revocations) Add(serials ...string) error {
	for _, s := range serials {
		if _, err := ParseSerial(s); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range serials {
		r.set[s] = struct{}{}
	}
	return nil
}

// Revoked reports whether serial is in the set.
func (r *Revocations) Revoked(serial *big.Int) bool {
	if serial == nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.set[SerialString(serial)]
	return ok
}

// Check returns an ErrRevoked error if cert is revoked, naming it.
func (r *Revocations) Check(cert *x509.Certificate) error {
	if cert == nil {
		return fmt.Errorf("%w: no certificate to check", ErrInvalid)
	}
	if r.Revoked(cert.SerialNumber) {
		return fmt.Errorf("%w: %q serial %s", ErrRevoked, cert.Subject.CommonName, SerialString(cert.SerialNumber))
	}
	return nil
}

// Len is the number of revoked serials.
func (r *Revocations) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.set)
}

// Serials lists the set, sorted, e.g. to hand to node APIs.
func (r *Revocations) Serials() []string {
	r.mu.RLock()
	out := make([]string, 0, len(r.set))
	for s := range r.set {
		out = append(out, s)
	}
	r.mu.RUnlock()
	slices.Sort(out)
	return out
}
