package hub

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	bolt "go.etcd.io/bbolt"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
)

// The hub keeps the last MaxRuns convergence runs (bucket "runs": run
// number, 8 bytes big-endian → api.RunRecord as JSON), each at most
// maxRunBytes once its strings are cut to their bounds: the bucket stays
// under a few MiB whatever an operator sends. The audit log keeps a line
// per run for ever.
const (
	MaxRuns     = 16
	maxRunBytes = 512 << 10
	// maxRunNames bounds a step's reads and writes, maxRunName each entry.
	maxRunNames = 16
	maxRunName  = 256
)

var bucketRuns = []byte("runs")

// RecordRun keeps a convergence run and audits it; it returns the run's
// number. Operator.
func (h *Hub) RecordRun(ctx context.Context, peer pki.Peer, r api.RunRecord) (uint64, error) {
	if err := h.begin(ctx, peer, pki.ActionRecordRun, "runs"); err != nil {
		return 0, err
	}
	raw, err := boundRun(&r, peer.Actor())
	if err != nil {
		return 0, errors.Join(err, h.record(peer.Actor(), string(pki.ActionRecordRun), "runs", err))
	}
	var seq uint64
	e := AuditEntry{Time: h.now(), Actor: peer.Actor(), Action: string(pki.ActionRecordRun), Target: r.Cluster}
	err = h.opt.Store.apply(e, func(tx *bolt.Tx, e *AuditEntry) error {
		b, err := tx.CreateBucketIfNotExists(bucketRuns)
		if err != nil {
			return err
		}
		if seq, err = b.NextSequence(); err != nil {
			return err
		}
		r.Seq = seq
		if raw, err = json.Marshal(r); err != nil {
			return err
		}
		if err := b.Put(seqKey(seq), raw); err != nil {
			return err
		}
		// Numbers only grow: every run numbered seq-MaxRuns or lower goes.
		c := b.Cursor()
		for k, _ := c.First(); k != nil && seq > MaxRuns && binary.BigEndian.Uint64(k) <= seq-MaxRuns; k, _ = c.First() {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n := r.Counts
		e.Detail = fmt.Sprintf("run %d %s in %v: %d changed, %d unchanged, %d failed, %d skipped",
			seq, r.Outcome, r.Duration, n.Changed, n.Unchanged, n.Failed, n.Skipped)
		return nil
	})
	return seq, err
}

// Runs returns the last limit runs kept (all when limit is 0), newest
// first. Reader.
func (h *Hub) Runs(ctx context.Context, peer pki.Peer, limit int) ([]api.RunRecord, error) {
	if err := h.begin(ctx, peer, pki.ActionRead, "runs"); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxRuns {
		limit = MaxRuns
	}
	out := []api.RunRecord{}
	err := h.opt.Store.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRuns)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var r api.RunRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: runs/%d: %w", ErrCorrupt, binary.BigEndian.Uint64(k), err)
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// boundRun checks a run record and cuts its strings to their bounds.
func boundRun(r *api.RunRecord, actor string) ([]byte, error) {
	if len(r.Steps) > api.MaxRunSteps {
		return nil, failf(ErrInvalid, "run of %d steps, at most %d", len(r.Steps), api.MaxRunSteps)
	}
	if err := pki.CheckName("cluster", r.Cluster); err != nil {
		return nil, failf(ErrInvalid, "%v", err)
	}
	switch r.Outcome {
	case "converged", "drifted", "failed":
	default:
		return nil, failf(ErrInvalid, "outcome %q: want converged, drifted or failed", cutRunText(r.Outcome, 64))
	}
	r.Seq, r.Actor = 0, actor
	for i := range r.Steps {
		s := &r.Steps[i]
		s.ID, s.Phase, s.Outcome, s.Cause = cutRunText(s.ID, maxRunName), cutRunText(s.Phase, maxRunName), cutRunText(s.Outcome, 32), cutRunText(s.Cause, maxRunName)
		s.Diff, s.Error = cutRunText(s.Diff, api.MaxRunDiffBytes), cutRunText(s.Error, api.MaxRunErrorBytes)
		s.Reads, s.Writes = cutNames(s.Reads), cutNames(s.Writes)
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode run: %w", err)
	}
	if len(raw) > maxRunBytes {
		return nil, failf(ErrInvalid, "run record of %d bytes, at most %d", len(raw), maxRunBytes)
	}
	return raw, nil
}

func cutNames(names []string) []string {
	if len(names) > maxRunNames {
		names = names[:maxRunNames]
	}
	for i := range names {
		names[i] = cutRunText(names[i], maxRunName)
	}
	return names
}

// cutRunText bounds s to n bytes of valid UTF-8 without control characters other
// than newline and tab, saying when it cut.
func cutRunText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) {
			return r
		}
		return -1
	}, strings.ToValidUTF8(s, "?"))
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + fmt.Sprintf("… (%d bytes in all)", len(s))
}
