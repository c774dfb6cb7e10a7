// Package etcdsnap takes snapshots of a cluster's etcd and keeps the last
// few: the hub on the master asks a member for one on a schedule (over
// etcd's JSON gateway, authenticated by a client certificate of the etcd
// CA) and stores it on the master's data partition, checked against the
// SHA-256 etcd appends to every snapshot, so a replacement of the whole
// control plane has something to restore from (docs/kubernetes.md).
package etcdsnap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/durable"
)

// MaxBytes bounds a snapshot: etcd's backend quota (1 GiB, kubeplan) and
// room to spare. A member streaming more is refused.
const MaxBytes = 2 << 30

// Snapshot is one kept snapshot.
type Snapshot struct {
	Name   string    `json:"name"`
	Member string    `json:"member"`
	Taken  time.Time `json:"taken"`
	Bytes  int64     `json:"bytes"`
	SHA256 string    `json:"sha256"`
	// Revision is the etcd revision it holds (0: unknown; Revision).
	Revision int64 `json:"revision,omitempty"`
}

// fileRE is a kept snapshot's name: etcd-<UTC time>-<member>.db.
var fileRE = regexp.MustCompile(`^etcd-(\d{8}T\d{6}Z)-([a-z0-9][a-z0-9-]{0,62})\.db$`)

const timeLayout = "20060102T150405Z"

// Member is an etcd member to ask: its name and client URL.
type Member struct {
	Name, URL string
}

// Take asks the members in order for a snapshot until one streams a whole
// one whose appended hash checks, stores it in dir (durably, under its
// final name only once complete) and keeps the newest keep snapshots.
func Take(ctx context.Context, cl *http.Client, members []Member, dir string, keep int, now time.Time) (*Snapshot, error) {
	if len(members) == 0 {
		return nil, errors.New("etcd snapshot: no member to ask")
	}
	var errs []string
	for _, m := range members {
		s, err := takeFrom(ctx, cl, m, dir, now)
		if err == nil {
			if err := prune(dir, keep); err != nil {
				return s, err
			}
			return s, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", m.Name, err))
	}
	return nil, fmt.Errorf("etcd snapshot: no member gave one: %s", strings.Join(errs, "; "))
}

func takeFrom(ctx context.Context, cl *http.Client, m Member, dir string, now time.Time) (*Snapshot, error) {
	name := fmt.Sprintf("etcd-%s-%s.db", now.UTC().Format(timeLayout), m.Name)
	if !fileRE.MatchString(name) {
		return nil, fmt.Errorf("member name %q", m.Name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL+"/v3/maintenance/snapshot", strings.NewReader("{}"))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := cl.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return nil, fmt.Errorf("%s: %s", res.Status, strings.TrimSpace(string(b)))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var size int64
	sum := sha256.New()
	tail := &tailHash{}
	err = durable.WriteFrom(filepath.Join(dir, name), 0o600, func(w io.Writer) error {
		dec := json.NewDecoder(io.LimitReader(res.Body, MaxBytes*2)) // base64 and JSON around it
		for {
			var chunk struct {
				Result *struct {
					Blob string `json:"blob"`
				} `json:"result"`
				Error *struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := dec.Decode(&chunk); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return fmt.Errorf("snapshot stream: %w", err)
			}
			if chunk.Error != nil {
				return fmt.Errorf("snapshot stream: %s", clip(chunk.Error.Message))
			}
			if chunk.Result == nil {
				continue
			}
			b, err := base64.StdEncoding.DecodeString(chunk.Result.Blob)
			if err != nil {
				return fmt.Errorf("snapshot stream: %w", err)
			}
			if size += int64(len(b)); size > MaxBytes {
				return fmt.Errorf("snapshot larger than %d bytes", int64(MaxBytes))
			}
			sum.Write(b)
			tail.Write(b)
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		// etcd appends the SHA-256 of what precedes: a cut or corrupted
		// stream does not check.
		if !tail.ok() {
			return errors.New("snapshot: its appended SHA-256 does not match its content (cut off or corrupted)")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Snapshot{Name: name, Member: m.Name, Taken: now.UTC().Truncate(time.Second), Bytes: size, SHA256: hex.EncodeToString(sum.Sum(nil)),
		Revision: Revision(filepath.Join(dir, name))}, nil
}

// tailHash hashes everything but the last 32 bytes written, and keeps
// those: etcd's appended hash of the rest.
type tailHash struct {
	h    hash.Hash
	last []byte
}

func (t *tailHash) Write(b []byte) {
	if t.h == nil {
		t.h = sha256.New()
	}
	t.last = append(t.last, b...)
	if n := len(t.last) - sha256.Size; n > 0 {
		t.h.Write(t.last[:n])
		t.last = slices.Clone(t.last[n:])
	}
}

func (t *tailHash) ok() bool {
	return t.h != nil && len(t.last) == sha256.Size && bytes.Equal(t.h.Sum(nil), t.last)
}

// List is the kept snapshots in dir, newest first; other files are
// ignored. Their digests are computed (a snapshot is not trusted for
// having a good name).
func List(dir string) ([]Snapshot, error) {
	return NewDir(dir).List()
}

// prune removes all but the newest keep snapshots.
func prune(dir string, keep int) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range ents {
		if fileRE.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names) // the UTC time sorts them
	for len(names) > max(keep, 1) {
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil {
			return err
		}
		names = names[1:]
	}
	return nil
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
