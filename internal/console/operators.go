// Who a console request acts as: the one operator whose certificate runs
// the console (kubedos console on an operator's machine), or, in the
// console the hub serves on the master, the operator of each session.

package console

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"time"

	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/pki"
)

// Operator is who a request acts as, and the clients that act as them.
type Operator struct {
	Name string
	Role pki.Role
	Hub  Hub
	// Act revokes, fences or replaces a node as this operator (nil: those
	// actions are not offered).
	Act func(ctx context.Context, act cluster.NodeAction) (cluster.NodeActed, error)
	// Runs reads the hub's convergence runs (nil: the plan is shown
	// without its last run).
	Runs Runs
	// Expires is when the operator's certificate does: a session ends no
	// later (zero: only the session's own limit).
	Expires time.Time
	// Alive authenticates the operator again (nil: nothing to check); a
	// session whose operator it refuses (certificate revoked or expired)
	// ends at once.
	Alive func(ctx context.Context) error

	// id binds CSRF tokens to the certificate and role.
	id string
}

// NewOperator is the operator cert speaks for, acting with role (at most
// the certificate's; the hub checks that again on every call).
func NewOperator(cert *x509.Certificate, role pki.Role, h Hub) *Operator {
	sum := sha256.Sum256(cert.Raw)
	return &Operator{Name: cert.Subject.CommonName, Role: role, Hub: h, Expires: cert.NotAfter, id: hex.EncodeToString(sum[:]) + "/" + string(role)}
}

// Operators let several operators use one console, each as themselves:
// the console the hub serves on the master (AtHub). Both calls
// authenticate the certificate (chain, validity, revocation list, role)
// and audit the session under the operator.
type Operators interface {
	// Redeem opens a one-time login link (kubedos console login).
	Redeem(ctx context.Context, token, remote string) (*Operator, error)
	// Certificate logs in the operator whose client certificate the
	// browser presented (the TLS handshake verified its chain).
	Certificate(ctx context.Context, cert *x509.Certificate, remote string) (*Operator, error)
}
