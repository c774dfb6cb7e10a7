package agent

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/observability"
)

// The prometheus node's Kubernetes metrics credential: checked with the
// reader certificate it shares a key with, written beside it.

// kubeCertGood: no Kubernetes to scrape (the hub sent no Kubernetes CA),
// or a Kubernetes metrics credential for the reader's key that is not due.
func (p *prometheusRunner) kubeCertGood(reader *x509.Certificate) bool {
	if _, err := os.Stat(p.obs(observability.FileKubeCA)); err != nil {
		return true
	}
	k, err := readCert(p.obs(observability.FileKubeCert))
	return err == nil && p.clock.Now().Before(RenewAt(k)) && publicKeysEqual(k.PublicKey, reader.PublicKey)
}

// writeKubeCert writes the Kubernetes metrics credential the hub sent for
// key (none: the hub runs no Kubernetes; any old one is removed).
func (p *prometheusRunner) writeKubeCert(key crypto.Signer, der []byte) error {
	dst := p.obs(observability.FileKubeCert)
	if len(der) == 0 {
		if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("prometheus: the hub's Kubernetes metrics credential: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return errors.New("prometheus: the hub's Kubernetes metrics credential is not for the key this node sent")
	}
	if err := durable.WriteFile(dst, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	p.logf("prometheus: Kubernetes metrics credential %x (%s, %v) until %s", cert.SerialNumber, cert.Subject.CommonName,
		cert.Subject.Organization, cert.NotAfter.UTC().Format(time.RFC3339))
	return nil
}
