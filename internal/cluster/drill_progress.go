package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/kubedos/kubedos/internal/durable"
)

// drillProgress is what a drill has done to a node so far, kept in the
// cluster's state directory after every step, so a drill cut off half-way
// (a step failed, the operator's machine stopped) is resumed by the next
// `--drill NODE` from the step it stopped at, with the EK of the machine
// it fenced; a finished drill removes it.
type drillProgress struct {
	Node    string    `json:"node"`
	OldEK   string    `json:"oldEKHash"`
	Started time.Time `json:"started"`
	// Done are the steps finished, in order.
	Done []string `json:"done"`
}

// maxDrillProgress bounds the file read back: a few names and a hash.
const maxDrillProgress = 16 << 10

// drillRecord keeps a node's drillProgress in a file.
type drillRecord struct{ path string }

func (c *Cluster) drillRecord(node string) drillRecord {
	return drillRecord{filepath.Join(c.Dir, "drills", node+".json")}
}

// load is the progress of an unfinished drill of node (ok false: none).
// A record that does not decode, or is another node's, is an error naming
// the file: resuming from a guess could skip the fence.
func (r drillRecord) load(node string) (drillProgress, bool, error) {
	var p drillProgress
	b, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, false, err
	}
	if len(b) > maxDrillProgress {
		return p, false, fmt.Errorf("%s: %d bytes, not a drill's progress", r.path, len(b))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, false, fmt.Errorf("%s: %w (remove it to start the drill over)", r.path, err)
	}
	if p.Node != node || p.OldEK == "" {
		return p, false, fmt.Errorf("%s: the progress of node %q with EK %q, not a drill of %s (remove it to start over)", r.path, p.Node, p.OldEK, node)
	}
	for _, s := range p.Done {
		if !slices.Contains(drillSteps, s) {
			return p, false, fmt.Errorf("%s: unknown step %q (remove it to start over)", r.path, s)
		}
	}
	return p, true, nil
}

func (r drillRecord) save(p drillProgress) error {
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(r.path, append(b, '\n'), 0o600)
}

func (r drillRecord) clear() error {
	if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// drillSteps are every step, in order.
var drillSteps = []string{DrillFence, DrillReplace, DrillDestroy, DrillRecreate, DrillEnroll, DrillKubelet, DrillProbe}
