package agent

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
)

// RenewAt is when a certificate is renewed: two thirds into its life, so a
// hub that is down for a while does not leave the node without identity.
func RenewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// renewMu makes renewals one at a time: the renewal, re-attestation and
// kubernetes-pki controllers all renew, and each writes the one identity.
var renewMu sync.Mutex

// Renew re-attests: a fresh quote with the enrolled AK over the hub's nonce,
// authenticated by the current certificate, for a new certificate on a new
// key. A refusal means the hub quarantined the node.
func Renew(ctx context.Context, cfg EnrollConfig) (*Enrolled, error) {
	renewMu.Lock()
	defer renewMu.Unlock()
	pair, err := cfg.identity()
	if err != nil {
		return nil, fmt.Errorf("renew: current identity: %w", err)
	}
	blob, err := os.ReadFile(filepath.Join(cfg.StateDir, AKFile))
	if err != nil {
		return nil, fmt.Errorf("renew: enrolled AK: %w", err)
	}
	p, err := cfg.OpenProver()
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if err := p.LoadAK(blob); err != nil {
		return nil, err
	}
	cc, err := dialHub(cfg.HubAddr(), cfg.CA, &pair)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	hub := api.NewEnrollmentClient(cc)
	n, err := hub.RenewBegin(ctx)
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	key, res, cert, err := proveForCertificate(ctx, p, cfg, n.Session, n.Nonce, n.PCRs, "renew", hub.Renew)
	if err != nil {
		return nil, err
	}
	return saveIdentity(cfg.StateDir, key, res.Certificate, cert)
}

// renewal is the controller that renews the node's certificate at
// RenewAt with a fresh quote. A failed attempt is the supervisor's to
// retry (with backoff: the certificate is good for a third of its life
// still); the hub's refusal is fatal: the node is quarantined.
type renewal struct {
	cfg   EnrollConfig
	clock Clock
	logf  func(string, ...any)
}

func (renewal) Name() string { return "renewal" }

func (r renewal) Run(ctx context.Context) error {
	for {
		pair, err := r.cfg.identity()
		if err != nil {
			return err
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			return err
		}
		if !sleep(ctx, r.clock, RenewAt(leaf).Sub(r.clock.Now())) {
			return nil
		}
		got, err := Renew(ctx, r.cfg)
		switch {
		case err != nil && final(err):
			return Fatal(err)
		case err != nil:
			return fmt.Errorf("renewal failed: %w", err)
		}
		r.logf("certificate renewed: serial %x until %s", got.Certificate.SerialNumber, got.Certificate.NotAfter.UTC().Format(time.RFC3339))
	}
}
