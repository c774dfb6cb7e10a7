// Package console is the cluster's web console: an http.Handler that shows
// the hub's node registry, each node's own API (health, planes, drift,
// services), the builds it is given, upgrades in progress, the convergence
// plan and the audit log, and takes the node actions (revoke, fence,
// replace, upgrade, restart a service) and rolls a build through the
// cluster through the library calls the CLI makes, as one operator.
//
// The console holds no power of its own. It calls the hub and the nodes
// with the certificate of the operator who runs it (kubedos console) and
// offers only the actions that certificate's role allows by the same role
// table the hub enforces (pki.Allows); the hub or the node checks again and
// audits every action under that operator's name. A browser gets in with
// the login token printed at start (a session cookie, HttpOnly, Secure,
// SameSite=Strict), so another user of the machine reaching the loopback
// port cannot act as the operator; every POST also carries a CSRF token
// bound to the session and the operator's certificate.
package console
