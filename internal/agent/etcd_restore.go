package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/etcdsnap"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/manifest"
)

// Restoring etcd replaces every member's data with one snapshot, as a new
// cluster: etcd cannot roll a running cluster back, and a member restored
// alone could not rejoin the others (its history would disagree with
// theirs). So each member gets the same snapshot and the same new token,
// and each forms the new cluster ID from the plan's members; the old
// members refuse it (another cluster ID) until they are restored too, and
// the new cluster serves once a quorum of them is. `kubedos cluster
// snapshots restore` drives it member by member (docs/kubernetes.md).

// EtcdRestorer replaces the node's etcd member's data with a snapshot
// (kubeRunner).
type EtcdRestorer interface {
	EtcdRestore(ctx context.Context, begin api.EtcdRestoreBegin, data io.Reader) (*api.EtcdRestoreResult, error)
}

var (
	// etcdRestoredDir is where etcdutl writes the restored data, renamed
	// over the member's data directory only once complete.
	etcdRestoredDir = kubeplan.EtcdDataDir + ".restored"
	// EtcdPreviousDir keeps the member's data from before the last
	// restore (one: an older one is removed), for an operator to go back
	// to by hand or to read what was lost.
	EtcdPreviousDir = kubeplan.EtcdDataDir + ".pre-restore"
)

// etcdRestoreBump is how far a restore moves etcd's revision on: past
// every revision a client of the cluster before it saw, so the API
// servers' caches and every watcher take the restored keyspace as newer
// and, their revisions compacted, list it again instead of waiting for
// changes they already saw (Kubernetes' own restore advice).
const etcdRestoreBump = 1_000_000_000

// etcdRestoreTimeout bounds etcdutl's run: a 1 GiB backend rewritten on
// a slow emulated disk.
const etcdRestoreTimeout = 15 * time.Minute

// restoreAPIStopGrace bounds the API server's graceful stop in a
// restore; then it is killed. Its graceful stop drains the requests in
// flight, and on the last members a restore reaches those hang on an etcd
// member cut off from the ones already restored until their 60 s
// timeout (run 20: 98 s for the last member against 15-17 s for the
// first two). Nothing they would answer survives the restore anyway.
const restoreAPIStopGrace = 15 * time.Second

var restoreTokenRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// checkRestoreBegin refuses a begin message before any byte is spooled.
func checkRestoreBegin(b *api.EtcdRestoreBegin) error {
	switch {
	case !etcdsnap.ValidName(b.Snapshot):
		return fmt.Errorf("%w: snapshot %q is not a kept snapshot's name (etcd-<UTC time>-<member>.db)", ErrInvalid, clipString(b.Snapshot))
	case b.Bytes <= 0 || b.Bytes > etcdsnap.MaxBytes:
		return fmt.Errorf("%w: snapshot size %d bytes, want 1 to %d", ErrInvalid, b.Bytes, int64(etcdsnap.MaxBytes))
	case !manifest.IsSHA256(b.SHA256):
		return fmt.Errorf("%w: sha256 %q is not 64 lower-case hex digits", ErrInvalid, clipString(b.SHA256))
	case !restoreTokenRE.MatchString(b.Token):
		return fmt.Errorf("%w: token %q is not a DNS label", ErrInvalid, clipString(b.Token))
	}
	return nil
}

// EtcdRestore spools the snapshot beside the member's data directory and
// checks its size and SHA-256 against begin before it stops anything;
// then it stops the API server (when the node runs one) and etcd, has
// etcdutl restore the snapshot into a new data directory (etcdutl checks
// the hash etcd appended too), keeps the data before it as
// EtcdPreviousDir, puts the restored one in its place and queues etcd's
// start on it. The API server starts again through the controller's loop, held as
// at its first start until the member is healthy. A failure before the
// swap starts etcd again on its old data.
func (k *kubeRunner) EtcdRestore(ctx context.Context, b api.EtcdRestoreBegin, data io.Reader) (*api.EtcdRestoreResult, error) {
	if err := checkRestoreBegin(&b); err != nil {
		return nil, err
	}
	p, err := k.loadPlan()
	if err != nil {
		return nil, err
	}
	if p == nil || !slices.Contains(p.Components, kubeplan.Etcd) {
		return nil, fmt.Errorf("%w: this node runs no etcd member", ErrNotFound)
	}
	self, ok := findMember(p.EtcdMembers, p.Node)
	if !ok {
		return nil, fmt.Errorf("%w: the plan does not list %s as an etcd member", ErrRefused, p.Node)
	}
	if !k.restoring.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("%w: an etcd restore is already running on %s", ErrRefused, p.Node)
	}
	defer k.restoring.Store(false)

	res := &api.EtcdRestoreResult{Node: p.Node, Snapshot: b.Snapshot, SHA256: b.SHA256, Bytes: b.Bytes, Token: b.Token,
		DataDir: kubeplan.EtcdDataDir}
	began := time.Now()
	step := func(what string) {
		res.Steps = append(res.Steps, fmt.Sprintf("%s: %.1f s", what, time.Since(began).Seconds()))
		k.logf("kubernetes: etcd restore from %s: %s", b.Snapshot, res.Steps[len(res.Steps)-1])
		began = time.Now()
	}
	dataDir := k.path(kubeplan.EtcdDataDir)
	spool, err := k.spoolSnapshot(filepath.Dir(dataDir), b, data)
	if err != nil {
		return nil, err
	}
	defer os.Remove(spool)
	step(fmt.Sprintf("receive and check %d bytes", b.Bytes))

	// The controller's loop would start what this stops: it waits.
	k.runMu.Lock()
	defer k.runMu.Unlock()
	var stop []kubeplan.Component
	if slices.Contains(p.Components, kubeplan.APIServer) {
		stop = append(stop, kubeplan.APIServer)
	}
	stop = append(stop, kubeplan.Etcd)
	// Every start from here on is a first start: the API server waits for
	// its member to be healthy again.
	k.mu.Lock()
	delete(k.started, kubeplan.APIServer)
	delete(k.started, kubeplan.Etcd)
	k.apiWaitSince = time.Time{}
	k.mu.Unlock()
	for _, c := range stop {
		how, err := k.stopForRestore(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("stop %s: %w", kubeplan.UnitName(c), err)
		}
		step("stop " + kubeplan.UnitName(c) + how)
	}

	restored := k.path(etcdRestoredDir)
	if err := os.RemoveAll(restored); err != nil {
		return nil, k.restartOld(ctx, err)
	}
	var initial []string
	for _, m := range p.EtcdMembers {
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	args := []string{"snapshot", "restore", spool, "--name=" + p.Node, "--data-dir=" + restored,
		"--initial-cluster=" + strings.Join(initial, ","), "--initial-advertise-peer-urls=" + self.PeerURL,
		"--initial-cluster-token=" + b.Token,
		"--bump-revision=" + strconv.Itoa(etcdRestoreBump), "--mark-compacted"}
	etcdutl := k.etcdutl
	if etcdutl == nil {
		etcdutl = runEtcdutl
	}
	rctx, cancel := context.WithTimeout(ctx, etcdRestoreTimeout)
	err = etcdutl(rctx, args...)
	cancel()
	if err != nil {
		_ = os.RemoveAll(restored)
		return nil, k.restartOld(ctx, fmt.Errorf("%w: etcdutl snapshot restore: %v", ErrRefused, err))
	}
	step("etcdutl snapshot restore")

	previous := k.path(EtcdPreviousDir)
	if err := os.RemoveAll(previous); err != nil {
		_ = os.RemoveAll(restored)
		return nil, k.restartOld(ctx, err)
	}
	switch err := os.Rename(dataDir, previous); {
	case err == nil:
		res.Previous = EtcdPreviousDir
	case errors.Is(err, fs.ErrNotExist):
	default:
		_ = os.RemoveAll(restored)
		return nil, k.restartOld(ctx, err)
	}
	// A power cut between the two renames leaves no data directory and
	// the old data as EtcdPreviousDir: the restore is then run again.
	if err := durable.PublishDir(restored, dataDir); err != nil {
		if res.Previous != "" {
			if rerr := os.Rename(previous, dataDir); rerr == nil {
				return nil, k.restartOld(ctx, err)
			}
		}
		return nil, err
	}
	// The join record was the old data directory's: the restored one was
	// made for the plan's members, as at a new cluster's bootstrap.
	if err := os.Remove(k.path(EtcdJoinFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	step("keep the data before as " + EtcdPreviousDir + ", put the restored data in place")
	// Queued, not waited for: etcd (Type=notify) is ready only once a
	// quorum of members runs the restored cluster, and the others are
	// restored after this call returns (the first drill 6 run: a blocking
	// start timed out after 90 s, alone with members of the old cluster).
	if err := k.units.Queue(ctx, kubeplan.UnitName(kubeplan.Etcd)); err != nil {
		return nil, fmt.Errorf("the restored data is in place; start %s: %w", kubeplan.UnitName(kubeplan.Etcd), err)
	}
	step("start " + kubeplan.UnitName(kubeplan.Etcd) + " (queued: it serves once a quorum of members is restored)")
	k.logf("kubernetes: etcd member %s restored from %s (sha256 %s, token %s); the data before it is in %s",
		p.Node, b.Snapshot, b.SHA256, b.Token, orNone([]string{res.Previous}))
	return res, nil
}

// stopForRestore stops c's unit; the API server's graceful stop is
// bounded by restoreAPIStopGrace, then its processes are killed. It says
// how the stop ended when it was not graceful.
func (k *kubeRunner) stopForRestore(ctx context.Context, c kubeplan.Component) (string, error) {
	unit := kubeplan.UnitName(c)
	if c != kubeplan.APIServer {
		return "", k.units.Stop(ctx, unit)
	}
	grace := k.apiStopGrace
	if grace == 0 {
		grace = restoreAPIStopGrace
	}
	sctx, cancel := context.WithTimeout(ctx, grace)
	err := k.units.Stop(sctx, unit)
	cancel()
	if err == nil || ctx.Err() != nil {
		return "", err
	}
	// The stop job goes on in systemd after its client gave up; killing
	// the processes ends it, and a second stop waits for that.
	if err := k.units.Kill(ctx, unit); err != nil {
		return "", fmt.Errorf("kill after %s of graceful stop: %w", grace, err)
	}
	return fmt.Sprintf(" (killed after %s of graceful stop)", grace), k.units.Stop(ctx, unit)
}

// spoolSnapshot writes data to a new file in dir and keeps it only when
// its size and SHA-256 are begin's; it returns the file's path.
func (k *kubeRunner) spoolSnapshot(dir string, b api.EtcdRestoreBegin, data io.Reader) (string, error) {
	f, err := os.CreateTemp(dir, ".etcd-restore-*.db")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(data, b.Bytes+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	sum := hex.EncodeToString(h.Sum(nil))
	switch {
	case err != nil:
		err = fmt.Errorf("receiving the snapshot: %w", err)
	case n != b.Bytes || sum != b.SHA256:
		err = fmt.Errorf("%w: the snapshot received is not the one announced: %d bytes with sha256 %s, announced %d bytes with sha256 %s",
			ErrInvalid, n, sum, b.Bytes, b.SHA256)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// restartOld starts etcd again on the data it had, after a restore failed
// before its data directory was replaced, and returns why it failed.
func (k *kubeRunner) restartOld(ctx context.Context, why error) error {
	if err := k.units.Queue(ctx, kubeplan.UnitName(kubeplan.Etcd)); err != nil {
		return fmt.Errorf("%w; starting etcd again on its data from before: %v", why, err)
	}
	return fmt.Errorf("%w; etcd was started again on its data from before", why)
}

// runEtcdutl runs Debian's etcdutl (etcd-server 3.5 and later ship it).
func runEtcdutl(ctx context.Context, args ...string) error {
	if _, err := exec.LookPath("etcdutl"); err != nil {
		return fmt.Errorf("this build has no etcdutl (Debian's etcd-server ships it from etcd 3.5, trixie on)")
	}
	_, err := run(ctx, "etcdutl", args...)
	return err
}

// etcdRestorer is k as the node API's EtcdRestorer, nil without a
// Kubernetes runner.
func etcdRestorer(k *kubeRunner) EtcdRestorer {
	if k == nil {
		return nil
	}
	return k
}
