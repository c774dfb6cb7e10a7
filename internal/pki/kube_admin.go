package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// GroupMasters is the group Kubernetes' default RBAC binds to cluster-admin
// (ClusterRoleBinding cluster-admin); the authorizer lets it do anything.
const GroupMasters = "system:masters"

// KubeAdminPrefix prefixes the Kubernetes user of an admin kubeconfig: the
// operator it was issued to follows, so the apiserver's audit log names
// the person, and no operator name can be mistaken for a node, a
// controller or a service account (those start with "system:").
const KubeAdminPrefix = "kubedos-admin:"

// MaxKubeAdminLife bounds an admin kubeconfig's certificate: Kubernetes
// checks no revocation, so the life is the only bound on a leaked one.
const MaxKubeAdminLife = time.Hour

// maxAdminUser bounds the escaped operator name in the user (the CN stays
// within X.520's 64 bytes with the prefix).
const maxAdminUser = 64 - len(KubeAdminPrefix)

// KubeAdminUser is the Kubernetes user name of operator's admin
// credential: KubeAdminPrefix and the operator name with every byte
// outside [A-Za-z0-9._@-] escaped as %XX (so ':' '/' ',' spaces and
// control characters cannot shape the name), at most 64 bytes in all; a
// name too long for that is cut and given a hash of the whole, so two
// operators never share a user.
func KubeAdminUser(operator string) string {
	var b strings.Builder
	for i := 0; i < len(operator); i++ {
		c := operator[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._@-", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	esc := b.String()
	if len(esc) > maxAdminUser {
		sum := sha256.Sum256([]byte(operator))
		tag := "~" + hex.EncodeToString(sum[:4])
		cut := maxAdminUser - len(tag)
		// Never cut an escape in half.
		if i := strings.LastIndexByte(esc[:cut], '%'); i >= cut-2 {
			cut = i
		}
		esc = esc[:cut] + tag
	}
	return KubeAdminPrefix + esc
}

// SignAdmin certifies the CSR's key as operator's Kubernetes admin
// credential: CN KubeAdminUser(operator), O system:masters, client auth,
// for life (at most MaxKubeAdminLife), by the Kubernetes CA. As with
// Sign, only the CSR's key is used: a CSR asking for another user or
// group gets this identity. The caller has checked operator is an admin.
func (k *KubeCAs) SignAdmin(csrDER []byte, operator string, life time.Duration, now time.Time) (*x509.Certificate, error) {
	if err := checkCN(operator); err != nil {
		return nil, err
	}
	if life <= 0 || life > MaxKubeAdminLife {
		return nil, fmt.Errorf("%w: admin credential life %v outside (0, %v]", ErrInvalid, life, MaxKubeAdminLife)
	}
	if k == nil || k.Kubernetes == nil {
		return nil, fmt.Errorf("%w: no Kubernetes CA", ErrBadCA)
	}
	csr, err := parseCSR(csrDER, "admin credential")
	if err != nil {
		return nil, err
	}
	t := &x509.Certificate{
		Subject:               pkix.Name{CommonName: KubeAdminUser(operator), Organization: []string{GroupMasters}},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	return k.Kubernetes.issue(t, csr.PublicKey, life, now)
}
