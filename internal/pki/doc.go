// Package pki is the cluster certificate authority as a library: it loads
// the CA that `kubedos keys init` made (ca/ca.key, ca/ca.crt, ECDSA P-256),
// signs node CSRs after the hub has verified attestation, issues operator
// client certificates and the hub's TLS certificate, reads the role a
// certificate carries, decides what a role may do, and checks revocation.
//
// Certificates this package issues:
//
//	node      CN = SAN DNS = node name, O = "kubedos:node", OU = node role,
//	          client + server auth, key from the node's CSR (P-256 or ed25519)
//	operator  CN = name, O = "kubedos:<admin|operator|reader>", client auth,
//	          P-256 key generated here
//	hub       CN = "kubedos hub", SAN = the hub's hosts, server auth
//
// Every certificate has a random 128-bit serial, starts a minute before the
// issuing time (clock skew) and never outlives the CA.
//
// pki sits at rank 1 with internal/sign, so it may not import it: the role
// prefix and PEM forms are repeated here and a test checks they agree with the
// key ceremony's.
package pki
