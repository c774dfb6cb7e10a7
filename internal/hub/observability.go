package hub

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kubedos/kubedos/internal/observability"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// ActionObservability is the audit action of a reader certificate issued
// to the prometheus node (and of a refused request for its configuration).
const ActionObservability = string(pki.ActionObservability)

// ObservabilityGiven is what the prometheus node gets.
type ObservabilityGiven struct {
	// Enabled is false when the spec runs no Prometheus: nothing else is set.
	Enabled bool
	// Dashboards: the caller serves the dashboards.
	Dashboards bool
	Cluster    string
	Listen     string
	Files      observability.Files
	CAPEM      []byte
	// Reader is set when a CSR came.
	Reader *x509.Certificate
	// KubeCAPEM and Kube (when a CSR came) are the Kubernetes CA and the
	// metrics credential for the same key, when the spec runs Kubernetes
	// and this hub holds its CAs.
	KubeCAPEM []byte
	Kube      *x509.Certificate
}

// ObservabilityConfig answers the node peer speaks for with Prometheus's
// configuration (observability.Generate over the hub's spec, scraping the
// nodes the registry holds as enrolled, so a revoked or fenced node drops
// out of the targets with no hand edit) and, for csr (nil: none), a
// reader certificate, one the node's revocation revokes with it. Only an
// enrolled node presenting its newest certificate, whose spec role is
// prometheus, is answered so; a grafana node learns where Prometheus is,
// to serve the dashboards, and nothing more. The dashboards are the grafana
// node's, or the prometheus node's when the spec has no grafana node; a refusal is audited, an answer without a
// certificate is a read and is not (the node asks every 30 s).
func (h *Hub) ObservabilityConfig(ctx context.Context, peer pki.Peer, csr []byte) (*ObservabilityGiven, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := h.authorize(peer, pki.ActionObservability, peer.Name); err != nil {
		return nil, err
	}
	fail := func(err error) (*ObservabilityGiven, error) {
		return nil, errors.Join(err, h.record(peer.Actor(), ActionObservability, peer.Name, err))
	}
	s := h.opt.Spec
	if s == nil || !s.Workloads.Observability.Prometheus {
		return &ObservabilityGiven{}, nil
	}
	n, err := h.opt.Store.Node(peer.Name)
	if err != nil {
		return fail(err)
	}
	if n.State != StateEnrolled {
		return fail(failf(ErrState, "node %s is %s: no observability configuration", n.Name, n.State))
	}
	if n.CertSerial != peer.Serial {
		return fail(failf(ErrState, "node %s presented certificate %s, not its newest (%s)", n.Name, peer.Serial, n.CertSerial))
	}
	sn, ok := s.NodeByName(n.Name)
	if !ok || (sn.Role != spec.RolePrometheus && sn.Role != spec.RoleGrafana) || n.Role != string(sn.Role) || peer.NodeRole != n.Role {
		return fail(failf(ErrForbidden, "node %s (role %s) is not a prometheus or grafana node of the spec", n.Name, n.Role))
	}
	ds := spec.WithDefaults(s)
	listen, err := observability.Listen(ds)
	if err != nil {
		return nil, failf(ErrState, "observability configuration: %v", err)
	}
	if sn.Role == spec.RoleGrafana {
		// Where Prometheus is, to serve the dashboards from; no
		// configuration and never a certificate: it reads Prometheus over
		// wg-observability, not the nodes.
		if csr != nil {
			return fail(failf(ErrForbidden, "node %s (role grafana) gets no reader certificate: only the prometheus node scrapes", n.Name))
		}
		return &ObservabilityGiven{Enabled: true, Dashboards: true, Cluster: ds.Metadata.Name, Listen: listen.String()}, nil
	}
	nodes, err := h.opt.Store.Nodes()
	if err != nil {
		return nil, err
	}
	var enrolled []string
	for _, o := range nodes {
		if o.State != StateEnrolled {
			continue
		}
		if _, inSpec := s.NodeByName(o.Name); inSpec {
			enrolled = append(enrolled, o.Name)
		}
	}
	// The spec is the hub's: an error here is its configuration, not the
	// node's doing, and is not audited as a refusal of it.
	kube := ds.Workloads.Kubernetes.Enabled && h.opt.Kube != nil
	files, err := observability.Generate(ds, enrolled, observability.Options{Kubernetes: kube})
	if err != nil {
		return nil, failf(ErrState, "observability configuration: %v", err)
	}
	out := &ObservabilityGiven{Enabled: true, Cluster: ds.Metadata.Name, Listen: listen.String(), Files: files, CAPEM: h.opt.CA.CertPEM(),
		Dashboards: ds.CountRole(spec.RoleGrafana) == 0}
	if kube {
		out.KubeCAPEM = h.opt.Kube.cas.Kubernetes.CertPEM()
	}
	if csr == nil {
		return out, nil
	}
	now := h.now()
	life := h.opt.CertLifetime
	if kube {
		// Both are renewed together: the reader's life follows the
		// Kubernetes credential's, so few live reader certificates pile up
		// on the node's list (revoked with it).
		life = min(life, pki.MaxKubeMonitoringLife)
	}
	cert, err := h.opt.CA.SignReaderCSR(csr, n.Name, life, now)
	if err != nil {
		return fail(failf(ErrInvalid, "reader certificate: %v", err))
	}
	var kcert *x509.Certificate
	if kube {
		if kcert, err = h.opt.Kube.cas.SignMonitoring(csr, n.Name, life, now); err != nil {
			return fail(failf(ErrInvalid, "Kubernetes metrics credential: %v", err))
		}
	}
	if err := h.opt.Store.AddReaderCert(peer, cert, kcert, now); err != nil {
		return nil, err // nothing leaves the hub unaudited
	}
	h.met.issue("reader", 1)
	out.Reader, out.Kube = cert, kcert
	return out, nil
}

// AddReaderCert records cert, a reader certificate issued to the node peer
// speaks for, among the node's certificates (so revoking, fencing,
// quarantining or replacing the node revokes it too), audited with kube,
// the Kubernetes metrics credential issued with it (nil: none; Kubernetes
// has no revocation: its hour is its bound). The node must still be
// enrolled and peer its newest certificate.
func (s *Store) AddReaderCert(peer pki.Peer, cert, kube *x509.Certificate, now time.Time) error {
	serial := pki.SerialString(cert.SerialNumber)
	e := AuditEntry{Time: now, Actor: peer.Actor(), Action: ActionObservability, Target: peer.Name}
	return s.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		n, err := getNode(tx, peer.Name)
		if err != nil {
			return err
		}
		if n.State != StateEnrolled || n.CertSerial != peer.Serial {
			return failf(ErrState, "node %s changed (%s, newest certificate %s) while its reader certificate was made", n.Name, n.State, n.CertSerial)
		}
		e.Detail = fmt.Sprintf("reader certificate %s (%s) until %s", serial, cert.Subject.CommonName, stamp(cert.NotAfter))
		if kube != nil {
			e.Detail += fmt.Sprintf("; Kubernetes metrics credential %s (%s, %s) until %s", pki.SerialString(kube.SerialNumber),
				kube.Subject.CommonName, pki.GroupMonitoring, stamp(kube.NotAfter))
		}
		n.Certs = append(liveCerts(n.Certs, now), Cert{Serial: serial, NotAfter: cert.NotAfter})
		n.UpdatedAt = now
		return put(tx, bucketNodes, n.Name, n)
	})
}
