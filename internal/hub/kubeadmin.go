package hub

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// ActionKubeAdmin is the audit action of an admin kubeconfig's issuance.
const ActionKubeAdmin = string(pki.ActionKubeAdmin)

// KubeAdminIssued is an operator's Kubernetes admin credential.
type KubeAdminIssued struct {
	Cert, KubernetesCA *x509.Certificate
	// Server is the API server's URL from an operator's machine.
	Server string
}

// IssueKubeAdmin certifies the key in csr (PKCS #10 DER) as peer's
// Kubernetes admin credential: user pki.KubeAdminUser(peer.Name) in group
// system:masters, for min(pki.MaxKubeAdminLife, the spec's
// certificateLifetime). Only an operator certificate of role admin may ask
// (operators, readers and nodes are denied); the CSR's names are ignored.
// Every refusal and the issuance (serial, expiry) are audited as
// kubernetes.admin with the operator as actor.
func (h *Hub) IssueKubeAdmin(ctx context.Context, peer pki.Peer, csr []byte) (*KubeAdminIssued, error) {
	if err := h.begin(ctx, peer, pki.ActionKubeAdmin, "kubernetes"); err != nil {
		return nil, err
	}
	fail := func(err error) (*KubeAdminIssued, error) {
		return nil, errors.Join(err, h.record(peer.Actor(), ActionKubeAdmin, "kubernetes", err))
	}
	k, s := h.opt.Kube, h.opt.Spec
	if k == nil || s == nil || !s.Workloads.Kubernetes.Enabled {
		return fail(failf(ErrState, "this hub issues no Kubernetes certificates (no Kubernetes CAs, or Kubernetes not enabled in the spec)"))
	}
	life, err := s.Workloads.Kubernetes.Lifetimes()
	if err != nil {
		return fail(failf(ErrInvalid, "spec: %v", err))
	}
	server, err := adminAPIServer(s)
	if err != nil {
		return fail(failf(ErrState, "%v", err))
	}
	now := h.now()
	cert, err := k.cas.SignAdmin(csr, peer.Name, min(pki.MaxKubeAdminLife, life.Default), now)
	if err != nil {
		return fail(failf(ErrInvalid, "%v", err))
	}
	user := cert.Subject.CommonName
	err = h.opt.Store.Record(AuditEntry{Time: now, Actor: peer.Actor(), Action: ActionKubeAdmin, Target: user, Outcome: OutcomeOK,
		Detail: fmt.Sprintf("Kubernetes client certificate %s (group %s) until %s for %s", pki.SerialString(cert.SerialNumber),
			pki.GroupMasters, cert.NotAfter.UTC().Format(time.RFC3339), server)})
	if err != nil {
		return nil, err // nothing leaves the hub unaudited
	}
	h.met.issue("kubernetes-admin", 1)
	return &KubeAdminIssued{Cert: cert, KubernetesCA: k.cas.Kubernetes.Certificate(), Server: server}, nil
}

// adminAPIServer is the URL an operator's machine reaches the API server
// at: the VIP when the spec has one (load balancers or control planes hold
// it), else the first
// control-plane node's LAN address (the kubernetes plane, which nodes use,
// is not reachable from off the cluster). The apiserver's certificate
// names both (pki's apiserver SANs).
func adminAPIServer(s *spec.ClusterSpec) (string, error) {
	if v := s.Topology.APIVIP; v != "" && s.APIVIPHolders() != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return "", fmt.Errorf("topology.apiVIP %q: %w", v, err)
		}
		return "https://" + netip.AddrPortFrom(a, kubeplan.APIServerPort).String(), nil
	}
	for _, n := range s.Topology.Nodes {
		if n.Role == spec.RoleControlPlane {
			a, err := netip.ParseAddr(n.Address)
			if err != nil {
				return "", fmt.Errorf("node %s address %q: %w", n.Name, n.Address, err)
			}
			return "https://" + netip.AddrPortFrom(a, kubeplan.APIServerPort).String(), nil
		}
	}
	return "", fmt.Errorf("workloads.kubernetes is enabled but the topology has no controlplane node")
}
