package upgrade

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/earlyboot"
)

// Tries is how many boots a new entry gets to be marked good (DESIGN.md §4).
const Tries = 3

// Disk is the node's boot disk: the block device, or an image file in tests.
type Disk interface {
	earlyboot.GPTDisk
}

// Entry is a UKI on the ESP with the root hash its cmdline names.
type Entry struct {
	earlyboot.BootEntry
	RootHash string
}

// Entries lists the kubedos UKIs on the ESP mounted at esp, highest
// generation first.
func Entries(esp string) ([]Entry, error) {
	dir := filepath.Join(esp, earlyboot.ESPLinuxDir)
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read the ESP's %s: %w", earlyboot.ESPLinuxDir, err)
	}
	var out []Entry
	for _, de := range des {
		be, ok := earlyboot.ParseBootEntry(de.Name())
		if !ok {
			continue
		}
		e := Entry{BootEntry: be}
		if cl, err := UKICmdline(filepath.Join(dir, de.Name())); err == nil {
			if cfg, err := earlyboot.ParseCmdline(cl); err == nil {
				e.RootHash = cfg.RootHash
			}
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Gen > out[j].Gen })
	return out, nil
}

func nextGen(entries []Entry) int {
	g := 0
	for _, e := range entries {
		g = max(g, e.Gen)
	}
	return g + 1
}

// Result says what an install or rollback did.
type Result struct {
	Slot  string `json:"slot"`  // the slot the next boot tries
	Build string `json:"build"` // the build it holds
	Entry string `json:"entry"` // the UKI written or renamed, on the ESP
}

// emptyUUID marks a slot with no bootable root: no root hash maps to it.
func emptyUUID(label string) string {
	h := sha256.Sum256([]byte("kubedos-empty-slot\x00" + label))
	u := hex.EncodeToString(h[:16])
	return u[0:8] + "-" + u[8:12] + "-4" + u[13:16] + "-a" + u[17:20] + "-" + u[20:32]
}

// Install writes a staged payload into the slot that is not running and
// adds its UKI with tries left. progress gets each step's name.
func Install(ctx context.Context, disk Disk, esp string, booted Booted, st *Staged, progress func(string)) (*Result, error) {
	step := func(s string) {
		if progress != nil {
			progress(s)
		}
	}
	parts, err := earlyboot.ReadGPT(disk)
	if err != nil {
		return nil, err
	}
	if s, err := earlyboot.FindSlot(parts, booted.RootHash); err != nil || s != booted.Slot {
		return nil, fmt.Errorf("the running root (hash %s) is not in slot %s as booted: %v", booted.RootHash, booted.Slot, err)
	}
	target := earlyboot.OtherSlot(booted.Slot)
	rootP, _ := earlyboot.PartitionByLabel(parts, earlyboot.RootLabel(target))
	verP, _ := earlyboot.PartitionByLabel(parts, earlyboot.VerityLabel(target))
	for _, c := range []struct {
		p    earlyboot.Partition
		file string
	}{{rootP, st.Files[PartRoot]}, {verP, st.Files[PartVerity]}} {
		fi, err := os.Stat(c.file)
		if err != nil {
			return nil, err
		}
		if c.p.Label == "" || fi.Size() > c.p.Size() {
			return nil, refuse("%s is %d bytes; partition %q holds %d", filepath.Base(c.file), fi.Size(), c.p.Label, c.p.Size())
		}
	}
	entries, err := Entries(esp)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.Counted && !e.Bad() && e.RootHash == booted.RootHash {
			return nil, refuse("the running boot (%s) is on trial and not marked good yet", e.Name())
		}
	}
	// 1. Nothing may point at the target slot while it is written: drop
	// every entry but the running build's, then clear the slot's UUIDs.
	step("retire the entries of slot " + target)
	for _, e := range entries {
		if e.RootHash != booted.RootHash {
			if err := os.Remove(filepath.Join(esp, earlyboot.ESPLinuxDir, e.Name())); err != nil {
				return nil, fmt.Errorf("remove old entry %s: %w", e.Name(), err)
			}
		}
	}
	if err := durable.SyncDir(filepath.Join(esp, earlyboot.ESPLinuxDir)); err != nil {
		return nil, err
	}
	if err := earlyboot.SetPartUUIDs(disk, map[string]string{rootP.Label: emptyUUID(rootP.Label), verP.Label: emptyUUID(verP.Label)}); err != nil {
		return nil, err
	}
	// 2. Write and read back.
	for _, c := range []struct {
		p    earlyboot.Partition
		file string
	}{{rootP, st.Files[PartRoot]}, {verP, st.Files[PartVerity]}} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		step("write " + c.p.Label)
		if err := writeAt(disk, c.file, c.p.Offset()); err != nil {
			return nil, fmt.Errorf("write %s: %w", c.p.Label, err)
		}
		if err := disk.Sync(); err != nil {
			return nil, err
		}
		step("read back " + c.p.Label)
		if err := compareAt(disk, c.file, c.p.Offset()); err != nil {
			return nil, fmt.Errorf("read back %s: %w", c.p.Label, err)
		}
	}
	// 3. The slot is whole: give it the new root hash's UUIDs, then the UKI.
	step("point slot " + target + " at root hash " + st.Role.RootHash[:12])
	if err := earlyboot.SetPartUUIDs(disk, map[string]string{rootP.Label: earlyboot.RootPartUUID(st.Role.RootHash),
		verP.Label: earlyboot.VerityPartUUID(st.Role.RootHash)}); err != nil {
		return nil, err
	}
	rel := earlyboot.UKIEntryPath(nextGen(entries), st.Role.RoleID, Tries)
	step("add boot entry " + rel)
	if err := copyFileSync(st.Files[PartUKI], filepath.Join(esp, rel)); err != nil {
		return nil, err
	}
	return &Result{Slot: target, Build: st.Role.RoleID, Entry: rel}, nil
}

// Rollback makes the other slot's entry the next boot, with tries left, so
// a rollback that fails to boot comes back by itself.
func Rollback(disk Disk, esp string, booted Booted) (*Result, error) {
	parts, err := earlyboot.ReadGPT(disk)
	if err != nil {
		return nil, err
	}
	entries, err := Entries(esp)
	if err != nil {
		return nil, err
	}
	target := earlyboot.OtherSlot(booted.Slot)
	for _, e := range entries {
		if e.RootHash == "" || e.RootHash == booted.RootHash {
			continue
		}
		if s, err := earlyboot.FindSlot(parts, e.RootHash); err != nil || s != target {
			continue
		}
		next := e.BootEntry
		next.Gen, next.Counted, next.Left, next.Done = nextGen(entries), true, Tries, 0
		dir := filepath.Join(esp, earlyboot.ESPLinuxDir)
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(dir, next.Name())); err != nil {
			return nil, err
		}
		if err := durable.SyncDir(dir); err != nil {
			return nil, err
		}
		return &Result{Slot: target, Build: e.Build, Entry: earlyboot.ESPLinuxDir + "/" + next.Name()}, nil
	}
	return nil, fmt.Errorf("slot %s holds no build with a boot entry: nothing to roll back to", target)
}

// Bless marks the running trial boot good: the entry loses its counter, as
// systemd-bless-boot would do. It returns the new name, or "" when the
// running entry has no counter (not a trial boot).
func Bless(esp string, booted Booted) (string, error) {
	entries, err := Entries(esp)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if !e.Counted || e.RootHash != booted.RootHash {
			continue
		}
		good := e.BootEntry
		good.Counted, good.Left, good.Done = false, 0, 0
		dir := filepath.Join(esp, earlyboot.ESPLinuxDir)
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(dir, good.Name())); err != nil {
			return "", err
		}
		return good.Name(), durable.SyncDir(dir)
	}
	return "", nil
}

// Failed lists entries newer than the running one that ran out of tries:
// upgrades that did not come up and were rolled back by the boot loader.
func Failed(esp string, booted Booted) ([]Entry, error) {
	entries, err := Entries(esp)
	if err != nil {
		return nil, err
	}
	var cur int
	for _, e := range entries {
		if e.RootHash == booted.RootHash {
			cur = max(cur, e.Gen)
		}
	}
	var out []Entry
	for _, e := range entries {
		if e.Bad() && e.Gen > cur {
			out = append(out, e)
		}
	}
	return out, nil
}

func writeAt(disk io.WriterAt, file string, off int64) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.NewOffsetWriter(disk, off), f)
	return err
}

func compareAt(disk io.ReaderAt, file string, off int64) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	a, b := sha256.New(), sha256.New()
	if _, err := io.Copy(a, f); err != nil {
		return err
	}
	if _, err := io.Copy(b, io.NewSectionReader(disk, off, fi.Size())); err != nil {
		return err
	}
	if !bytes.Equal(a.Sum(nil), b.Sum(nil)) {
		return errors.New("the partition does not hold what was written")
	}
	return nil
}

// copyFileSync writes dst through a temporary name in its directory, syncs
// it, renames it into place and syncs the directory. Not durable.WriteFrom:
// dst is on the ESP, and vfat refuses the chmod that helper makes.
func copyFileSync(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := filepath.Join(filepath.Dir(dst), ".kubedos-new.tmp")
	_ = os.Remove(tmp)
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return durable.SyncDir(filepath.Dir(dst))
}
