package pki

import (
	"errors"

	"github.com/kubedos/kubedos/internal/errdefs"
)

// Classes of failure, for errors.Is. Errors returned by this package wrap
// one of them with the file, field or certificate that failed.
var (
	// ErrBadCA: the CA files are missing, malformed, not a CA, or the key
	// does not match the certificate.
	ErrBadCA = errors.New("bad cluster CA")
	// ErrBadCSR: the CSR does not parse or its signature does not verify.
	ErrBadCSR = errors.New("bad certificate request")
	// ErrKeyType: the public key is not one we certify (ECDSA P-256 or ed25519).
	ErrKeyType = errors.New("unsupported key type")
	// ErrCSRClaims: the CSR asks for an identity other than the node name
	// (another DNS name, an IP, URI or e-mail SAN, or a different CN).
	ErrCSRClaims = errors.New("certificate request claims another identity")
	// ErrKubeRole: the node's role does not hold the Kubernetes certificate asked for.
	ErrKubeRole = errdefs.New(errdefs.ErrPermission, "certificate not held by the node's role")
	// ErrInvalid: an argument (name, role, host, lifetime) is not acceptable.
	ErrInvalid = errdefs.New(errdefs.ErrInvalid, "invalid argument")
	// ErrUntrusted: a certificate was not issued by the cluster CA.
	ErrUntrusted = errors.New("not issued by the cluster CA")
	// ErrExpired: a certificate is past its NotAfter.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid: a certificate is before its NotBefore.
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrRevoked: a certificate's serial is in the revocation set.
	ErrRevoked = errors.New("certificate revoked")
	// ErrNotHub: the server a hub client reached presented a certificate
	// of the cluster CA that is not the hub's (a node's, named like it).
	ErrNotHub = errors.New("not the hub's certificate")
	// ErrNoRole: a certificate carries no kubedos role, an unknown one, or
	// more than one.
	ErrNoRole = errors.New("no valid kubedos role")
)
