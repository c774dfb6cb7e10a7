package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The acceptance record of a cluster (kubedos cluster seal): written beside
// the build's manifest, signed with the artifact key like it, appended to
// the hub's audit chain and carried in the recovery bundle as its recovery
// anchors.
const (
	AcceptanceFile    = "acceptance.json"
	AcceptanceSigFile = "acceptance.sig"
	AcceptanceKind    = "AcceptanceRecord"
	// MaxAcceptanceBytes bounds a record anyone reads or the hub accepts:
	// a few hundred nodes and checks fit many times over.
	MaxAcceptanceBytes = 1 << 20
)

// Acceptance is a sealed acceptance record: the gate's results and what
// the cluster was when it passed.
type Acceptance struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Cluster    string    `json:"cluster"`
	Time       time.Time `json:"time"`
	// WallTime is how long the gate took, in milliseconds.
	WallTimeMS int64 `json:"wallTimeMS"`
	// BuildID and ManifestSHA256 name the build the nodes run (the sha256
	// of its manifest.json, which manifest.sig signs).
	BuildID        string `json:"buildID"`
	ManifestSHA256 string `json:"manifestSHA256"`
	// Checks are every check the gate ran, in order.
	Checks []AcceptanceCheck `json:"checks"`
	// Allowed names the unchecked items the operator accepted the cluster
	// without (--allow-unchecked).
	Allowed []string         `json:"allowedUnchecked,omitempty"`
	Nodes   []AcceptanceNode `json:"nodes"`
	// CAs are the SHA-256 of each CA certificate's DER, by name (cluster,
	// kubernetes, etcd, front-proxy).
	CAs map[string]string `json:"caSHA256"`
	// AuditHead is the hub's audit chain head when the record was made;
	// the seal entry follows it.
	AuditHead AuditHead `json:"auditHead"`
	// EtcdSnapshot is the etcd snapshot the record anchors on, for a
	// cluster that runs etcd; absent otherwise, and in records sealed
	// before it existed.
	EtcdSnapshot *AcceptanceEtcdSnapshot `json:"etcdSnapshot,omitempty"`
}

// AcceptanceEtcdSnapshot is the newest etcd snapshot the hub held when the
// record was made: its file on the master (name, the member it came from,
// when, size, SHA-256 of the file, and the etcd revision it holds when
// known), or None saying why none is named (the hub holds none yet). The
// hub checks, when sealing, that it holds the named file with that digest.
type AcceptanceEtcdSnapshot struct {
	Name     string    `json:"name,omitempty"`
	Member   string    `json:"member,omitempty"`
	Taken    time.Time `json:"taken,omitzero"`
	Bytes    int64     `json:"bytes,omitempty"`
	SHA256   string    `json:"sha256,omitempty"`
	Revision int64     `json:"revision,omitempty"`
	None     string    `json:"none,omitempty"`
}

// MaxEtcdSnapshotNone bounds AcceptanceEtcdSnapshot.None.
const MaxEtcdSnapshotNone = 256

// Check says what is wrong with a named snapshot or a note, naming the
// field: exactly one of the two, each bounded.
func (s *AcceptanceEtcdSnapshot) Check() error {
	switch {
	case s.None != "" && (s.Name != "" || s.Member != "" || !s.Taken.IsZero() || s.Bytes != 0 || s.SHA256 != "" || s.Revision != 0):
		return fmt.Errorf("etcdSnapshot: both a snapshot and none (%q)", clip(s.None))
	case s.None != "":
		if len(s.None) > MaxEtcdSnapshotNone {
			return fmt.Errorf("etcdSnapshot.none: %d bytes, more than %d", len(s.None), MaxEtcdSnapshotNone)
		}
		return nil
	case s.Name == "" || len(s.Name) > 128 || strings.ContainsAny(s.Name, "/\\\x00"):
		return fmt.Errorf("etcdSnapshot.name: %q is not a snapshot's file name", clip(s.Name))
	case s.Member == "" || len(s.Member) > 63:
		return fmt.Errorf("etcdSnapshot.member: %q is not a member name", clip(s.Member))
	case s.Taken.IsZero():
		return errors.New("etcdSnapshot.taken: missing")
	case s.Bytes <= 0:
		return fmt.Errorf("etcdSnapshot.bytes: %d", s.Bytes)
	case s.Revision < 0:
		return fmt.Errorf("etcdSnapshot.revision: %d", s.Revision)
	case !IsSHA256(s.SHA256):
		return fmt.Errorf("etcdSnapshot.sha256: %q is not 64 lowercase hex digits", clip(s.SHA256))
	}
	return nil
}

// IsSHA256 reports whether s is a SHA-256 as kubedos writes them: 64
// lower-case hex digits.
func IsSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// AcceptanceCheck is one check's result: passed, failed (with what and
// which node) or not checked (with why).
type AcceptanceCheck struct {
	Name    string `json:"name"`
	Outcome string `json:"outcome"`
	Node    string `json:"node,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// AcceptanceNode is one node as the hub records it.
type AcceptanceNode struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	EKHash  string `json:"ekHash"`
	BuildID string `json:"buildID"`
}

// AuditHead is an audit chain's newest entry.
type AuditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// ParseAcceptance decodes a record strictly and bounded: an unknown field
// is an error, as for manifests.
func ParseAcceptance(raw []byte) (*Acceptance, error) {
	if len(raw) > MaxAcceptanceBytes {
		return nil, fmt.Errorf("acceptance record is %d bytes, more than %d", len(raw), MaxAcceptanceBytes)
	}
	var a Acceptance
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("acceptance record: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("acceptance record: data after the record")
	}
	if a.Kind != AcceptanceKind || a.Cluster == "" || a.BuildID == "" {
		return nil, fmt.Errorf("not an acceptance record (kind %q, cluster %q, buildID %q)", a.Kind, a.Cluster, a.BuildID)
	}
	if a.EtcdSnapshot != nil {
		if err := a.EtcdSnapshot.Check(); err != nil {
			return nil, fmt.Errorf("acceptance record: %w", err)
		}
	}
	return &a, nil
}
