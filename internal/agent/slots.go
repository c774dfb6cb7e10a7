package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/earlyboot"
	"github.com/kubedos/kubedos/internal/upgrade"
)

// Public keys the build puts in the image for checking upgrades.
var (
	ArtifactPubFile = "/etc/kubedos/artifact.pub"
	DBCertFile      = "/etc/kubedos/db.crt"
	// UpgradeSpoolDir is on tmpfs: a payload is held in memory until it
	// has passed every check.
	UpgradeSpoolDir = "/tmp/kubedos-upgrade"
	espMountDir     = "/run/kubedos/esp"
	// DataIDFile identifies the data partition's contents (EnsureDataID).
	DataIDFile = "/data/.kubedos-data-id"
	// EtcdSnapshotDir is where the hub on the master keeps etcd snapshots:
	// the data partition, bulk that survives upgrades and stays off the
	// state partition.
	EtcdSnapshotDir = "/data/kubedos/etcd-snapshots"
	// BootGoodFile tells the boot-deadline unit the trial boot was blessed.
	BootGoodFile = "/run/kubedos/boot-good"
)

// Slots is the node's A/B machinery: the boot disk, the ESP and what
// upgrades are checked against.
type Slots struct {
	Trust  upgrade.Trust
	Booted upgrade.Booted
	// OpenDisk opens the boot disk read-write; MountESP makes the ESP
	// available as a directory until release is called. Tests point them at
	// an image file and a plain directory.
	OpenDisk func() (*os.File, error)
	MountESP func() (dir string, release func(), err error)
	SpoolDir string

	mu sync.Mutex // one upgrade, rollback or bless at a time
	// writes counts the upgrades, rollbacks and blesses tried: what State
	// reads changes only through them once kubedosd runs, so a reader that
	// saw the same count need not mount the ESP again (Writes).
	writes atomic.Uint64
}

// Writes is how many times this process tried to change the boot entries.
func (s *Slots) Writes() uint64 { return s.writes.Load() }

// HostSlots is the real node's: the disk whose GPT has the kubedos labels,
// its ESP mounted (vfat) under /run for the duration of each operation.
func HostSlots(st Status, role string) (*Slots, error) {
	trust, err := upgrade.LoadTrust(ArtifactPubFile, DBCertFile)
	if err != nil {
		return nil, fmt.Errorf("upgrade keys in the image: %w", err)
	}
	return &Slots{Trust: trust, Booted: upgrade.Booted{Role: role, Build: st.Build, Slot: st.Slot, RootHash: st.RootHash},
		OpenDisk: func() (*os.File, error) {
			disk, _, err := earlyboot.FindBootDisk()
			if err != nil {
				return nil, err
			}
			return os.OpenFile(disk, os.O_RDWR, 0)
		},
		MountESP: mountESP, SpoolDir: UpgradeSpoolDir}, nil
}

func mountESP() (string, func(), error) {
	disk, parts, err := earlyboot.FindBootDisk()
	if err != nil {
		return "", nil, err
	}
	p, ok := earlyboot.PartitionByLabel(parts, earlyboot.LabelESP)
	if !ok {
		return "", nil, fmt.Errorf("%s has no partition labelled %q", disk, earlyboot.LabelESP)
	}
	if err := os.MkdirAll(espMountDir, 0o700); err != nil {
		return "", nil, err
	}
	dev := earlyboot.PartitionNode(strings.TrimPrefix(disk, "/dev/"), p.Number)
	mount := func() error {
		return unix.Mount(dev, espMountDir, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "umask=0077")
	}
	// A mount of ours left behind by a kubedosd that died is taken down.
	stale := func() { _ = unix.Unmount(espMountDir, 0) }
	if err := mountWhileBusy(mount, stale, espBusyWait, time.Second); err != nil {
		return "", nil, fmt.Errorf("mount the ESP %s: %w", dev, err)
	}
	return espMountDir, func() { _ = unix.Unmount(espMountDir, 0) }, nil
}

// espBusyWait bounds how long the ESP may stay busy.
var espBusyWait = 45 * time.Second

// mountWhileBusy mounts, retrying every interval while the device is busy
// (EBUSY), up to wait. Early in a boot systemd checks and automounts the ESP
// (systemd-gpt-auto-generator's efi.automount, fsck first, which opens the
// device exclusively): an upgrade that arrives then must wait, not fail.
func mountWhileBusy(mount func() error, stale func(), wait, interval time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := mount()
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still busy after %s: %w", wait, err)
		}
		stale()
		time.Sleep(interval)
	}
}

// writeESP is withESP for what changes the ESP (or may have, failing).
func (s *Slots) writeESP(fn func(disk *os.File, esp string) error) error {
	defer s.writes.Add(1)
	return s.withESP(fn)
}

// withESP runs fn with the ESP mounted and the disk open.
func (s *Slots) withESP(fn func(disk *os.File, esp string) error) error {
	disk, err := s.OpenDisk()
	if err != nil {
		return fmt.Errorf("open the boot disk: %w", err)
	}
	defer disk.Close()
	esp, release, err := s.MountESP()
	if err != nil {
		return err
	}
	defer release()
	return fn(disk, esp)
}

// State reads what the ESP says about this boot.
func (s *Slots) State() *api.BootState {
	s.mu.Lock()
	defer s.mu.Unlock()
	bs := &api.BootState{}
	err := s.withESP(func(disk *os.File, esp string) error {
		entries, err := upgrade.Entries(esp)
		if err != nil {
			return err
		}
		parts, err := earlyboot.ReadGPT(disk)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.RootHash == s.Booted.RootHash && bs.Entry == "" {
				bs.Entry = e.Name()
				bs.Trial = e.Counted
			} else if slot, err := earlyboot.FindSlot(parts, e.RootHash); err == nil && slot != s.Booted.Slot && bs.OtherSlot == "" {
				bs.OtherSlot = e.Build
			}
		}
		failed, err := upgrade.Failed(esp, s.Booted)
		for _, f := range failed {
			bs.RolledBack = append(bs.RolledBack, f.Build)
		}
		return err
	})
	if err != nil {
		bs.Error = err.Error()
	}
	if b, rerr := os.ReadFile(filepath.Join(NodeStateDir, BootCheckFile)); rerr == nil {
		bs.LastCheck = strings.TrimSpace(string(b))
	}
	return bs
}

func (s nodeService) Upgrade(stream api.UpgradeStream) (*api.UpgradeResult, error) {
	sl := s.n.cfg.Slots
	if sl == nil {
		return nil, fmt.Errorf("%w: this node has no A/B slots to upgrade", ErrRefused)
	}
	if !sl.mu.TryLock() {
		return nil, fmt.Errorf("%w: an upgrade or rollback is already running", ErrRefused)
	}
	defer sl.mu.Unlock()
	first, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("%w: upgrade stream: %v", ErrInvalid, err)
	}
	if len(first.Manifest) == 0 || len(first.Signature) == 0 {
		return nil, fmt.Errorf("%w: the first message must carry the manifest and its signature", ErrInvalid)
	}
	stager, err := upgrade.Begin(sl.Trust, sl.Booted, first.Manifest, first.Signature, sl.SpoolDir)
	if err != nil {
		return nil, refusal(err)
	}
	defer stager.Abort()
	// Each step is timed: an upgrade under TCG takes minutes and the
	// operator (and drill 5) should see where they go.
	began := time.Now()
	var total int64
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if err := stager.Write(c.Part, c.Data); err != nil {
			return nil, refusal(err)
		}
		total += int64(len(c.Data))
	}
	received := time.Now()
	staged, err := stager.Finish()
	if err != nil {
		return nil, refusal(err)
	}
	defer staged.Remove()
	res := &api.UpgradeResult{Node: s.n.cfg.Name, FromBuild: sl.Booted.Build, Bytes: total}
	res.Steps = append(res.Steps, fmt.Sprintf("receive and spool %d MiB: %.1f s", total>>20, received.Sub(began).Seconds()),
		fmt.Sprintf("check the spooled parts: %.1f s", time.Since(received).Seconds()))
	last, lastAt := "", time.Now()
	timed := func(next string) {
		if last != "" {
			res.Steps = append(res.Steps, fmt.Sprintf("%s: %.1f s", last, time.Since(lastAt).Seconds()))
			s.n.cfg.Logf("upgrade to %s: %s", staged.Role.RoleID, res.Steps[len(res.Steps)-1])
		}
		last, lastAt = next, time.Now()
	}
	err = sl.writeESP(func(disk *os.File, esp string) error {
		defer timed("")
		r, err := upgrade.Install(stream.Context(), disk, esp, sl.Booted, staged, timed)
		if err != nil {
			return err
		}
		res.Build, res.Slot, res.Entry = r.Build, r.Slot, r.Entry
		return nil
	})
	if err != nil {
		return nil, refusal(err)
	}
	if first.Reboot {
		if _, err := s.Reboot(stream.Context(), &api.PowerRequest{}); err != nil {
			return res, nil // written; the caller reboots
		}
		res.Rebooting = true
	}
	return res, nil
}

func (s nodeService) Rollback(ctx context.Context, req *api.RollbackRequest) (*api.UpgradeResult, error) {
	sl := s.n.cfg.Slots
	if sl == nil {
		return nil, fmt.Errorf("%w: this node has no A/B slots", ErrRefused)
	}
	if !sl.mu.TryLock() {
		return nil, fmt.Errorf("%w: an upgrade or rollback is already running", ErrRefused)
	}
	defer sl.mu.Unlock()
	res := &api.UpgradeResult{Node: s.n.cfg.Name, FromBuild: sl.Booted.Build}
	err := sl.writeESP(func(disk *os.File, esp string) error {
		r, err := upgrade.Rollback(disk, esp, sl.Booted)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrRefused, err)
		}
		res.Build, res.Slot, res.Entry = r.Build, r.Slot, r.Entry
		return nil
	})
	if err != nil {
		return nil, err
	}
	if req.Reboot {
		if _, err := s.Reboot(ctx, &api.PowerRequest{}); err == nil {
			res.Rebooting = true
		}
	}
	return res, nil
}

// Bless marks the booted entry good (the boot check passed).
func (s *Slots) Bless() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var name string
	err := s.writeESP(func(_ *os.File, esp string) error {
		var err error
		name, err = upgrade.Bless(esp, s.Booted)
		return err
	})
	return name, err
}

// refusal makes a payload the node will not take a FailedPrecondition.
func refusal(err error) error {
	if errors.Is(err, upgrade.ErrRefused) {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return err
}

// EnsureDataID writes a random identifier on the data partition unless one
// is there: upgrades and rollbacks must never touch data, and the
// identifier staying the same is how that is seen from outside.
func EnsureDataID() error {
	if _, err := os.Stat(DataIDFile); err == nil {
		return nil
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(DataIDFile), 0o700); err != nil {
		return err
	}
	return durable.WriteFile(DataIDFile, []byte(hex.EncodeToString(b)+"\n"), 0o644)
}
