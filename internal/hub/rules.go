package hub

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The identity rules, checked inside the transaction that acts on them.
//
//   - A node's identity is its EK. A name bound to one EK (registered,
//     enrolled) refuses every other EK: a clone. An EK bound to one name
//     refuses to be another.
//   - A quarantined, revoked or fenced name refuses every EK until Replace.
//   - Replace retires the EK for good and frees the name for a fresh one.
//   - Renewal needs the node enrolled, with the same EK.

// loadIdentity reads the node record of name and the EK record of ek.
func loadIdentity(tx *bolt.Tx, name, ek string) (*Node, *EKRecord, error) {
	var n Node
	var r EKRecord
	hasNode, err := get(tx, bucketNodes, name, &n)
	if err != nil {
		return nil, nil, err
	}
	hasRec, err := get(tx, bucketEKs, ek, &r)
	if err != nil {
		return nil, nil, err
	}
	np, rp := &n, &r
	if !hasNode {
		np = nil
	}
	if !hasRec {
		rp = nil
	}
	return np, rp, nil
}

// identityRule checks that the TPM with EK ek may act as name now.
func identityRule(kind SessionKind, name, ek string, n *Node, r *EKRecord) error {
	if r != nil && r.Retired {
		return refuse(name, CheckRetired, ErrRetiredEK,
			"EK %s belonged to node %s, which was replaced; it may never enroll again", ek, r.Name)
	}
	if r != nil && r.Name != "" && r.Name != name {
		return refuse(name, CheckClone, ErrClone, "EK %s is node %s's identity; one TPM cannot also be %s", ek, r.Name, name)
	}
	if n != nil {
		switch n.State {
		case StateQuarantined:
			return refuse(name, CheckQuarantined, ErrQuarantined,
				"node %s is quarantined (%s); replace it to enroll again", name, reasonText(n.Reason))
		case StateRevoked, StateFenced:
			return refuse(name, CheckRevoked, ErrNodeRevoked,
				"node %s is %s (%s); replace it to enroll again", name, n.State, reasonText(n.Reason))
		case StatePending, StateEnrolled:
			if n.EKHash != ek {
				return refuse(name, CheckClone, ErrClone,
					"node %s is %s with EK %s; this TPM's EK is %s", name, n.State, n.EKHash, ek)
			}
		}
	}
	if kind == KindRenew && (n == nil || n.State != StateEnrolled) {
		state := State("unknown")
		if n != nil {
			state = n.State
		}
		return refuse(name, CheckSession, ErrState, "node %s is %s; only an enrolled node renews", name, state)
	}
	return nil
}

// EKFacts is what the hub learned of an EK before asking the store to admit
// it.
type EKFacts struct {
	// Vouched: the EK certificate chains to a configured EK CA.
	Vouched bool
	// CertDetail says why not, for the refusal.
	CertDetail string
	// WindowAllowed: an open enrollment window admits the EK (the spec's EK
	// policy mode is "window").
	WindowAllowed bool
}

// admission applies the EK policy: the EK is this name's already, or
// registered, or vouched for by its certificate, or the window is open. It
// returns how the EK was admitted.
func admission(tx *bolt.Tx, name, ek string, n *Node, r *EKRecord, f EKFacts, now time.Time) (string, error) {
	switch {
	case n != nil && n.EKHash == ek && n.State == StateEnrolled:
		return "enrolled", nil
	case n != nil && n.EKHash == ek && n.State == StatePending, r != nil && r.Registered && r.Name == name:
		return "registered", nil
	case f.Vouched:
		return "certificate", nil
	}
	var w Window
	if _, err := get(tx, bucketMeta, string(keyWindow), &w); err != nil {
		return "", err
	}
	if f.WindowAllowed && w.Open(now) {
		return "window", nil
	}
	reg := "is not registered"
	if r != nil && r.Registered && r.Name == "" {
		// An older hub registered EKs for any one name.
		reg = "is registered with no node name (register it again for its node)"
	}
	why := "the EK certificate does not vouch for it"
	if f.CertDetail != "" {
		why = f.CertDetail
	}
	win := "enrollment windows are not used by this EK policy"
	if f.WindowAllowed {
		win = "the enrollment window is closed"
		if !w.Until.IsZero() {
			win += " since " + stamp(w.Until)
		}
	}
	return "", refuse(name, CheckEKPolicy, ErrUnknownEK, "EK %s %s; %s; %s", ek, reg, why, win)
}

// revokeLive adds n's unexpired certificates to the revocation set, in tx
// and (before commit, so failing closed) in the live set.
func (s *Store) revokeLive(tx *bolt.Tx, n *Node, why string, now time.Time) ([]string, error) {
	var serials []string
	for _, c := range n.Certs {
		if !c.NotAfter.After(now) {
			continue
		}
		rc := RevokedCert{Serial: c.Serial, Node: n.Name, NotAfter: c.NotAfter, At: now, Reason: why}
		if err := put(tx, bucketRevoked, c.Serial, rc); err != nil {
			return nil, err
		}
		serials = append(serials, c.Serial)
	}
	if err := s.revoked.Add(serials...); err != nil {
		return nil, fmt.Errorf("%w: node %s: %w", ErrCorrupt, n.Name, err)
	}
	n.Certs = nil
	return serials, nil
}

// liveCerts drops expired certificates.
func liveCerts(cs []Cert, now time.Time) []Cert {
	var out []Cert
	for _, c := range cs {
		if c.NotAfter.After(now) {
			out = append(out, c)
		}
	}
	return out
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func reasonText(r *Reason) string {
	if r == nil {
		return "no reason recorded"
	}
	return fmt.Sprintf("since %s, %s: %s", stamp(r.At), r.Check, r.Detail)
}
