package hub

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// genesis is the Prev of the first audit entry.
var genesis = hex.EncodeToString(make([]byte, sha256.Size))

// MaxAuditPage bounds one Audit read.
const MaxAuditPage = 1000

// maxAuditField bounds each string of an audit entry: details may quote
// what an unauthenticated node sent.
const maxAuditField = 4096

func clip(s string) string {
	if len(s) <= maxAuditField {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes in all)", strings.ToValidUTF8(s[:maxAuditField], ""), len(s))
}

func seqKey(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// entryHash is sha256 over the previous entry's hash and this entry's
// fields, each string length-prefixed so no two entries encode alike.
func entryHash(e AuditEntry) (string, error) {
	prev, err := hex.DecodeString(e.Prev)
	if err != nil || len(prev) != sha256.Size {
		return "", fmt.Errorf("entry %d: prev %q is not a sha256", e.Seq, e.Prev)
	}
	h := sha256.New()
	h.Write(prev)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], e.Seq)
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.Time.UnixNano()))
	h.Write(n[:])
	for _, s := range []string{e.Actor, e.Action, e.Target, e.Outcome, e.Detail} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// appendAudit adds e after the last entry, chaining its hash. There is no
// code path that updates or deletes an entry.
func appendAudit(tx *bolt.Tx, e AuditEntry) error {
	b := tx.Bucket(bucketAudit)
	e.Seq, e.Prev = 1, genesis
	if k, v := b.Cursor().Last(); k != nil {
		var last AuditEntry
		if err := json.Unmarshal(v, &last); err != nil {
			return fmt.Errorf("%w: audit/%d: %w", ErrCorrupt, binary.BigEndian.Uint64(k), err)
		}
		e.Seq, e.Prev = last.Seq+1, last.Hash
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC().Round(0)
	e.Actor, e.Action, e.Target, e.Detail = clip(e.Actor), clip(e.Action), clip(e.Target), clip(e.Detail)
	var err error
	if e.Hash, err = entryHash(e); err != nil {
		return fmt.Errorf("%w: audit: %w", ErrCorrupt, err)
	}
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit entry: %w", err)
	}
	return b.Put(seqKey(e.Seq), raw)
}

// Audit returns up to limit entries (MaxAuditPage if limit is 0 or more)
// from sequence number from on.
func (s *Store) Audit(from uint64, limit int) ([]AuditEntry, error) {
	if limit <= 0 || limit > MaxAuditPage {
		limit = MaxAuditPage
	}
	var out []AuditEntry
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Seek(seqKey(from)); k != nil && len(out) < limit; k, v = c.Next() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("%w: audit/%d: %w", ErrCorrupt, binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// AuditHead is the newest audit entry's sequence number and hash. Copied
// somewhere else (a recovery bundle, an operator's notes), it anchors the
// log: a later VerifyAuditChain whose head does not extend it shows the
// log's tail was cut.
type AuditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// VerifyAuditChain walks the whole audit log and checks that sequence
// numbers run 1, 2, 3… under matching keys, that each entry's Prev is its
// predecessor's Hash and that each Hash is right. It returns the head, or an
// ErrAuditChain error naming the first bad entry.
func (s *Store) VerifyAuditChain() (AuditHead, error) {
	head := AuditHead{Hash: genesis}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			want := head.Seq + 1
			if len(k) != 8 || binary.BigEndian.Uint64(k) != want {
				return fmt.Errorf("%w: key %x where entry %d should be", ErrAuditChain, k, want)
			}
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("%w: entry %d does not decode: %v", ErrAuditChain, want, err)
			}
			if e.Seq != want {
				return fmt.Errorf("%w: entry %d says it is %d", ErrAuditChain, want, e.Seq)
			}
			if e.Prev != head.Hash {
				return fmt.Errorf("%w: entry %d: prev %s, but entry %d hashes to %s", ErrAuditChain, want, e.Prev, head.Seq, head.Hash)
			}
			h, err := entryHash(e)
			if err != nil || h != e.Hash {
				return fmt.Errorf("%w: entry %d was changed: its hash is %s, recorded %s", ErrAuditChain, want, h, e.Hash)
			}
			head = AuditHead{Seq: want, Hash: e.Hash}
			return nil
		})
	})
	if err != nil {
		return AuditHead{}, err
	}
	return head, nil
}
