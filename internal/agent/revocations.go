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
}

// revokedDoc is RevokedFile's content.
type revokedDoc struct {
	Serials   []string  `json:"serials"`
	FetchedAt time.Time `json:"fetchedAt"`
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
	return l, nil
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
	if err := l.set.Add(serials...); err != nil {
		return fmt.Errorf("revocation list from the hub: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fetched, l.lastErr = at.UTC(), nil
	if l.file == "" {
		return nil
	}
	b, err := json.MarshalIndent(revokedDoc{Serials: l.set.Serials(), FetchedAt: l.fetched}, "", "  ")
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
func FetchRevocations(ctx context.Context, cfg EnrollConfig) ([]string, error) {
	cc, err := dialHubAsNode(cfg)
	if err != nil {
		return nil, fmt.Errorf("revocation list: %w", err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	res, err := api.NewRevocationsClient(cc).Revoked(ctx)
	if err != nil {
		return nil, fmt.Errorf("revocation list from hub %s: %w", cfg.HubAddr(), err)
	}
	return res.Serials, nil
}

// RefreshRevocations fetches the hub's list into l now and every `every`
// (on clock) until ctx ends. A failure keeps what l holds and is logged
// once until the next success.
func RefreshRevocations(ctx context.Context, cfg EnrollConfig, l *RevocationList, every time.Duration, clock Clock, logf func(string, ...any)) {
	lastLogged := ""
	for {
		serials, err := FetchRevocations(ctx, cfg)
		if err == nil {
			err = l.Update(serials, clock.Now())
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
