package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/spec"
)

// DefaultRevocationMaxAge bounds the age of a node's revocation list. The
// node fetches it from the hub's Revocations service every
// Config.RevocationsEvery (30 s), so a revocation reaches a node API within
// that while the hub is reachable; past the bound without a fetch the node
// refuses all but readers and reports itself unhealthy, so a hub cut off
// cannot keep a revoked operator working.
const DefaultRevocationMaxAge = 10 * time.Minute

// RevocationList is what the node knows of the hub's revoked serials: the
// set its API checks callers against, when it was last fetched, and a copy
// on the state partition so a reboot while the hub is unreachable forgets
// nothing. Revocations only grow. It is safe for concurrent use.
type RevocationList struct {
	file string
	set  *pki.Revocations

	mu      sync.Mutex
	fetched time.Time
	lastErr error
	// maxAge is the spec's bound as the hub last told it (0: never told).
	maxAge time.Duration
}

// revokedDoc is RevokedFile's content.
type revokedDoc struct {
	Serials   []string  `json:"serials"`
	FetchedAt time.Time `json:"fetchedAt"`
	// MaxAgeSeconds is the hub's word on the bound (0: none yet).
	MaxAgeSeconds int64 `json:"maxAgeSeconds,omitempty"`
}

// LoadRevocationList reads the list kept in file ("" keeps it in memory
// only); a missing file is an empty list. A file that does not decode is an
// error, with an empty list to go on with until the next fetch.
func LoadRevocationList(file string) (*RevocationList, error) {
	set, _ := pki.NewRevocations()
	l := &RevocationList{file: file, set: set}
	if file == "" {
		return l, nil
	}
	raw, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return l, fmt.Errorf("revocation list: %w", err)
	}
	var doc revokedDoc
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return l, fmt.Errorf("revocation list %s: %w", file, err)
	}
	if err := set.Add(doc.Serials...); err != nil {
		return l, fmt.Errorf("revocation list %s: %w", file, err)
	}
	l.fetched = doc.FetchedAt
	l.maxAge = maxAgeFromHub(doc.MaxAgeSeconds)
	return l, nil
}

// maxAgeFromHub takes the hub's bound only within the spec's own bounds:
// a value the spec could not hold is a fault somewhere, and the default
// then stands.
func maxAgeFromHub(secs int64) time.Duration {
	d := time.Duration(secs) * time.Second
	if secs <= 0 || secs > int64(spec.MaxRevocationMaxAge/time.Second) || d < spec.MinRevocationMaxAge {
		return 0
	}
	return d
}

// MaxAge is how old the list may grow before the node fails closed: the
// spec's trust.revocationMaxAge as the hub last told it, else def.
func (l *RevocationList) MaxAge(def time.Duration) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxAge > 0 {
		return l.maxAge
	}
	return def
}

// Set is the live set of revoked serials.
func (l *RevocationList) Set() *pki.Revocations { return l.set }

// Fetched says when the list was last fetched (zero: never) and the error
// of the last attempt, if it failed.
func (l *RevocationList) Fetched() (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fetched, l.lastErr
}

// Update adds serials fetched at at and keeps the list on disk.
func (l *RevocationList) Update(serials []string, at time.Time) error {
	return l.UpdateFrom(&api.RevokedResponse{Serials: serials}, at)
}

// UpdateFrom takes the hub's answer fetched at at: its serials, and its
// bound on the list's age when it gives one within the spec's bounds.
func (l *RevocationList) UpdateFrom(res *api.RevokedResponse, at time.Time) error {
	if err := l.set.Add(res.Serials...); err != nil {
		return fmt.Errorf("revocation list from the hub: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fetched, l.lastErr = at.UTC(), nil
	if res.MaxAgeSeconds != 0 {
		l.maxAge = maxAgeFromHub(res.MaxAgeSeconds)
	}
	if l.file == "" {
		return nil
	}
	b, err := json.MarshalIndent(revokedDoc{Serials: l.set.Serials(), FetchedAt: l.fetched,
		MaxAgeSeconds: int64(l.maxAge / time.Second)}, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(l.file, append(b, '\n'), 0o644)
}

func (l *RevocationList) failed(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastErr = err
}

// FetchRevocations asks the hub for its revoked serials, authenticated by
// the node's current certificate.
func FetchRevocations(ctx context.Context, cfg EnrollConfig) (*api.RevokedResponse, error) {
	cc, done, err := hubConn(cfg)
	if err != nil {
		return nil, fmt.Errorf("revocation list: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	res, err := api.NewRevocationsClient(cc).Revoked(ctx)
	done(err)
	if err != nil {
		return nil, fmt.Errorf("revocation list from hub %s: %w", cfg.HubAddr(), err)
	}
	return res, nil
}

// RefreshRevocations fetches the hub's list into l now and every `every`
// (on clock) until ctx ends. A failure keeps what l holds and is logged
// once until the next success.
func RefreshRevocations(ctx context.Context, cfg EnrollConfig, l *RevocationList, every time.Duration, clock Clock, logf func(string, ...any)) {
	lastLogged := ""
	for {
		res, err := FetchRevocations(ctx, cfg)
		if err == nil {
			err = l.UpdateFrom(res, clock.Now())
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			l.failed(err)
			if err.Error() != lastLogged {
				logf("%v (keeping %d known revocations; retrying every %s)", err, l.set.Len(), every)
				lastLogged = err.Error()
			}
		case lastLogged != "":
			logf("revocation list fetched from the hub again: %d revoked", l.set.Len())
			lastLogged = ""
		}
		if !sleep(ctx, clock, every) {
			return
		}
	}
}
