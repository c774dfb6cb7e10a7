package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/kubedos/kubedos/internal/pki"
)

// Buckets of the bbolt file. Keys and values:
//
//	meta      "schema" → "1"; "window" → Window (JSON)
//	nodes     node name → Node (JSON)
//	eks       EK hash (hex) → EKRecord (JSON)
//	sessions  session id (hex) → Session (JSON)
//	revoked   certificate serial (pki.SerialString) → RevokedCert (JSON)
//	audit     sequence number (8 bytes, big-endian, from 1) → AuditEntry (JSON)
//	builds    role image id → RoleBuild (JSON): images an operator assigned
//	retired   build-id (role image or manifest) → RetiredBuild (JSON)
var (
	bucketMeta     = []byte("meta")
	bucketNodes    = []byte("nodes")
	bucketEKs      = []byte("eks")
	bucketSessions = []byte("sessions")
	bucketRevoked  = []byte("revoked")
	bucketAudit    = []byte("audit")
	bucketBuilds   = []byte("builds")
	bucketRetired  = []byte("retired")
	allBuckets     = [][]byte{bucketMeta, bucketNodes, bucketEKs, bucketSessions, bucketRevoked, bucketAudit, bucketBuilds, bucketRetired}

	keySchema = []byte("schema")
	keyWindow = []byte("window")
)

const schemaVersion = "1"

// Store is the hub's state in one bbolt file. Every change, together with
// its audit entry, is one bbolt transaction: a crash or power cut leaves the
// state before or after it, never between. A Store is safe for concurrent
// use; bbolt serialises writers.
type Store struct {
	db   *bolt.DB
	path string
	// revoked mirrors the revoked bucket for TLS handshakes. A serial is
	// added before its transaction commits, so it may briefly (until the
	// next Open) hold a serial whose commit failed: over-revoking, never
	// under-revoking.
	revoked *pki.Revocations
}

// Open opens (or creates, mode 0600) the hub state at path. It fails after a
// second if another process holds the file.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open hub state %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	if err := s.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open hub state %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) init() error {
	var serials []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keySchema); {
		case v == nil:
			if err := meta.Put(keySchema, []byte(schemaVersion)); err != nil {
				return err
			}
		case string(v) != schemaVersion:
			return fmt.Errorf("%w: schema version %q, this hub reads %q", ErrCorrupt, v, schemaVersion)
		}
		return tx.Bucket(bucketRevoked).ForEach(func(k, _ []byte) error {
			serials = append(serials, string(k))
			return nil
		})
	})
	if err != nil {
		return err
	}
	s.revoked, err = pki.NewRevocations(serials...)
	if err != nil {
		return fmt.Errorf("%w: revoked bucket: %w", ErrCorrupt, err)
	}
	return nil
}

// Close closes the file. It waits for transactions in flight; later calls
// fail with ErrClosed.
func (s *Store) Close() error { return s.db.Close() }

// Path is the file the store lives in.
func (s *Store) Path() string { return s.path }

// Revocations is the live revocation set, for the TLS edge
// (pki.CA.Authenticate). It belongs to this Store: after reopening, take the
// new Store's.
func (s *Store) Revocations() *pki.Revocations { return s.revoked }

// view runs a read transaction.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	return closedErr(s.db.View(fn))
}

// apply runs fn in one write transaction and appends the audit entry e with
// it. fn fills in e's Outcome (OK by default) and Detail. If fn returns an
// outcome error (a refusal, a denial, a broken rule), the transaction still
// commits whatever fn deliberately wrote before deciding (such as ending a
// session; fn must check before writing otherwise) together with the audit
// entry recording the error, and apply returns the error. Any other error
// rolls everything back, audit entry included.
func (s *Store) apply(e AuditEntry, fn func(tx *bolt.Tx, e *AuditEntry) error) error {
	var result error
	err := s.db.Update(func(tx *bolt.Tx) error {
		entry := e
		entry.Outcome = OutcomeOK
		err := fn(tx, &entry)
		if err != nil {
			out, ok := outcomeOf(err)
			if !ok {
				return err
			}
			entry.Outcome = out
			entry.Detail = err.Error()
		}
		result = err
		return appendAudit(tx, entry)
	})
	if err != nil {
		return closedErr(err)
	}
	return result
}

// errQuiet rolls back the transaction of applyQuiet.
var errQuiet = errors.New("refused; nothing written")

// applyQuiet is apply for an action whose refusals the caller audits itself
// (in summary): an outcome error rolls back everything and is returned
// unaudited. Success commits fn's writes with the audit entry.
func (s *Store) applyQuiet(e AuditEntry, fn func(tx *bolt.Tx, e *AuditEntry) error) error {
	var refusal error
	err := s.db.Update(func(tx *bolt.Tx) error {
		entry := e
		entry.Outcome = OutcomeOK
		if err := fn(tx, &entry); err != nil {
			if _, ok := outcomeOf(err); ok {
				refusal = err
				return errQuiet
			}
			return err
		}
		return appendAudit(tx, entry)
	})
	if refusal != nil {
		return refusal
	}
	return closedErr(err)
}

// Record appends an audit entry for an action that changed nothing (a denied
// call, a refused request). Time defaults to now.
func (s *Store) Record(e AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	return closedErr(s.db.Update(func(tx *bolt.Tx) error { return appendAudit(tx, e) }))
}

func closedErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// get decodes the JSON value at bucket/key into v; it reports whether it
// exists.
func get(tx *bolt.Tx, bucket []byte, key string, v any) (bool, error) {
	raw := tx.Bucket(bucket).Get([]byte(key))
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("%w: %s/%s: %w", ErrCorrupt, bucket, key, err)
	}
	return true, nil
}

// put encodes v as JSON at bucket/key.
func put(tx *bolt.Tx, bucket []byte, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	return tx.Bucket(bucket).Put([]byte(key), raw)
}

// list decodes every value of bucket, in key order.
func list[T any](tx *bolt.Tx, bucket []byte) ([]T, error) {
	var out []T
	err := tx.Bucket(bucket).ForEach(func(k, raw []byte) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("%w: %s/%s: %w", ErrCorrupt, bucket, k, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// Node returns the record of one node; ErrNotFound if there is none.
func (s *Store) Node(name string) (Node, error) {
	var n Node
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = getNode(tx, name)
		return err
	})
	return n, err
}

// getNode reads one node record in tx; ErrNotFound if there is none.
func getNode(tx *bolt.Tx, name string) (Node, error) {
	var n Node
	ok, err := get(tx, bucketNodes, name, &n)
	if err == nil && !ok {
		err = failf(ErrNotFound, "node %q", name)
	}
	return n, err
}

// Nodes lists every node record, by name.
func (s *Store) Nodes() ([]Node, error) {
	var out []Node
	err := s.view(func(tx *bolt.Tx) (err error) {
		out, err = list[Node](tx, bucketNodes)
		return err
	})
	return out, err
}

// EK returns what the hub knows of one EK; ErrNotFound if nothing.
func (s *Store) EK(hash string) (EKRecord, error) {
	var r EKRecord
	err := s.view(func(tx *bolt.Tx) error {
		ok, err := get(tx, bucketEKs, hash, &r)
		if err == nil && !ok {
			err = failf(ErrNotFound, "EK %s", hash)
		}
		return err
	})
	return r, err
}

// Session returns one session; a *Refusal (ErrNoSession) if there is none.
func (s *Store) Session(id string) (Session, error) {
	var sess Session
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		sess, err = getSession(tx, id)
		return err
	})
	return sess, err
}

// Sessions lists every stored session.
func (s *Store) Sessions() ([]Session, error) {
	var out []Session
	err := s.view(func(tx *bolt.Tx) (err error) {
		out, err = list[Session](tx, bucketSessions)
		return err
	})
	return out, err
}

// Window returns the enrollment window (zero if never opened).
func (s *Store) Window() (Window, error) {
	var w Window
	err := s.view(func(tx *bolt.Tx) error {
		_, err := get(tx, bucketMeta, string(keyWindow), &w)
		return err
	})
	return w, err
}

// Revoked lists the revocation set.
func (s *Store) Revoked() ([]RevokedCert, error) {
	var out []RevokedCert
	err := s.view(func(tx *bolt.Tx) (err error) {
		out, err = list[RevokedCert](tx, bucketRevoked)
		return err
	})
	return out, err
}
