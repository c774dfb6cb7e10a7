package agent

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/attest"
)

// RenewAt is when a certificate is renewed: two thirds into its life, so a
// hub that is down for a while does not leave the node without identity.
func RenewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// Renew re-attests: a fresh quote with the enrolled AK over the hub's nonce,
// authenticated by the current certificate, for a new certificate on a new
// key. A refusal means the hub quarantined the node.
func Renew(ctx context.Context, cfg EnrollConfig) (*Enrolled, error) {
	pair, err := cfg.identity()
	if err != nil {
		return nil, fmt.Errorf("renew: current identity: %w", err)
	}
	blob, err := os.ReadFile(filepath.Join(cfg.StateDir, AKFile))
	if err != nil {
		return nil, fmt.Errorf("renew: enrolled AK: %w", err)
	}
	p, err := attest.OpenProver(cfg.TPM, cfg.EventLog)
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

// RenewLoop renews the node's certificate at RenewAt until ctx ends; a
// failed attempt is retried after a minute, a refusal ends the loop.
func RenewLoop(ctx context.Context, cfg EnrollConfig, logf func(string, ...any)) error {
	for {
		pair, err := cfg.identity()
		if err != nil {
			return err
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			return err
		}
		wait := time.Until(RenewAt(leaf))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		got, err := Renew(ctx, cfg)
		if err != nil {
			if final(err) {
				return err
			}
			logf("renewal failed: %v; retrying in a minute", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Minute):
			}
			continue
		}
		logf("certificate renewed: serial %x until %s", got.Certificate.SerialNumber, got.Certificate.NotAfter.UTC().Format(time.RFC3339))
	}
}
