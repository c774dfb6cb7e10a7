package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"time"
)

// GroupMonitoring is the group Kubernetes' default RBAC lets read the API
// server's /metrics and health endpoints (ClusterRole system:monitoring)
// and nothing else; kubeplan's addons let it read the kubelets' metrics.
const GroupMonitoring = "system:monitoring"

// MaxKubeMonitoringLife bounds the prometheus node's Kubernetes
// credential: Kubernetes checks no revocation, so a fenced prometheus
// node's credential is over within this.
const MaxKubeMonitoringLife = time.Hour

// KubeMonitoringUser is the Kubernetes user of node's Prometheus:
// ReaderName's, so the API server's audit log and the hub's say the same.
func KubeMonitoringUser(node string) string { return ReaderName(node) }

// SignMonitoring certifies the CSR's key as the prometheus node's
// Kubernetes metrics reader: CN KubeMonitoringUser(node), O
// system:monitoring, client auth, for life (at most
// MaxKubeMonitoringLife), by the Kubernetes CA. Only the CSR's key is
// used. The caller has checked node is the spec's enrolled prometheus node.
func (k *KubeCAs) SignMonitoring(csrDER []byte, node string, life time.Duration, now time.Time) (*x509.Certificate, error) {
	if err := CheckName("node name", node); err != nil {
		return nil, err
	}
	if life <= 0 || life > MaxKubeMonitoringLife {
		return nil, fmt.Errorf("%w: metrics credential life %v outside (0, %v]", ErrInvalid, life, MaxKubeMonitoringLife)
	}
	if k == nil || k.Kubernetes == nil {
		return nil, fmt.Errorf("%w: no Kubernetes CA", ErrBadCA)
	}
	csr, err := parseCSR(csrDER, "metrics credential for "+node)
	if err != nil {
		return nil, err
	}
	t := &x509.Certificate{
		Subject:               pkix.Name{CommonName: KubeMonitoringUser(node), Organization: []string{GroupMonitoring}},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	return k.Kubernetes.issue(t, csr.PublicKey, life, now)
}
