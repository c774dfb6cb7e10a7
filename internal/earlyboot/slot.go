package earlyboot

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/efi"
)

// Slots are the two A/B root slots of DESIGN.md §4.
var Slots = []string{"a", "b"}

// BootSlotFile is where kubedos-init records the slot it booted, for
// kubedosd: /run survives the switch to the real root.
const BootSlotFile = "/run/kubedos/slot"

// RootPartUUID and VerityPartUUID are the partition UUIDs of a slot that
// holds the root with this verity root hash: the first and last 128 bits of
// the hash, the convention of systemd-repart. The UKI names the hash, so the
// hash picks the slot, and a slot being rewritten (whose UUIDs are cleared
// first) can never be picked by mistake.
func RootPartUUID(rootHash string) string   { return hashUUID(rootHash, 0) }
func VerityPartUUID(rootHash string) string { return hashUUID(rootHash, 16) }

func hashUUID(rootHash string, off int) string {
	b, err := hex.DecodeString(rootHash)
	if err != nil || len(b) != 32 {
		return ""
	}
	u := hex.EncodeToString(b[off : off+16])
	return u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:32]
}

// FindSlot returns the slot whose root and verity partitions carry the UUIDs
// of rootHash. With the same build in both slots, either is right: verity
// checks every block against the same hash.
func FindSlot(parts []Partition, rootHash string) (string, error) {
	want, wantV := RootPartUUID(rootHash), VerityPartUUID(rootHash)
	if want == "" {
		return "", fmt.Errorf("root hash %q is not 64 hex digits", rootHash)
	}
	var seen []string
	for _, slot := range Slots {
		r, okR := PartitionByLabel(parts, RootLabel(slot))
		v, okV := PartitionByLabel(parts, VerityLabel(slot))
		if !okR || !okV {
			seen = append(seen, slot+": missing partitions")
			continue
		}
		if r.PartUUID == want && v.PartUUID == wantV {
			return slot, nil
		}
		seen = append(seen, fmt.Sprintf("%s: root %s verity %s", slot, r.PartUUID, v.PartUUID))
	}
	return "", fmt.Errorf("no slot holds root hash %s (want root %s verity %s; %s)", rootHash, want, wantV, strings.Join(seen, "; "))
}

// PartitionByLabel finds a partition by its GPT label.
func PartitionByLabel(parts []Partition, label string) (Partition, bool) {
	for _, p := range parts {
		if p.Label == label {
			return p, true
		}
	}
	return Partition{}, false
}

// OtherSlot is the slot an upgrade writes while slot runs.
func OtherSlot(slot string) string {
	if slot == "a" {
		return "b"
	}
	return "a"
}

// GPTDisk is a disk whose partition table can be read and rewritten.
type GPTDisk interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// SetPartUUIDs rewrites the unique GUIDs of the labelled partitions in both
// the primary and the backup GPT, with fresh CRCs, and syncs. The backup is
// written first: a power cut between the two leaves the primary valid (old
// or new), which is what firmware and kubedos-init read.
func SetPartUUIDs(disk GPTDisk, uuids map[string]string) error {
	primary, err := readHeader(disk, 1)
	if err != nil {
		return err
	}
	backupLBA := binary.LittleEndian.Uint64(primary[32:])
	backup, err := readHeader(disk, backupLBA)
	if err != nil {
		return fmt.Errorf("backup GPT: %w", err)
	}
	// Both tables are checked and rewritten in memory before either is written.
	var writes []tableWrite
	for _, hdr := range [][]byte{backup, primary} {
		w, err := rewriteEntries(disk, hdr, uuids)
		if err != nil {
			return err
		}
		writes = append(writes, w...)
	}
	for _, w := range writes {
		if _, err := disk.WriteAt(w.data, w.off); err != nil {
			return fmt.Errorf("write GPT: %w", err)
		}
	}
	return disk.Sync()
}

func readHeader(disk io.ReaderAt, lba uint64) ([]byte, error) {
	sector := make([]byte, 512)
	if _, err := disk.ReadAt(sector, int64(lba)*512); err != nil {
		return nil, fmt.Errorf("read GPT header at LBA %d: %w", lba, err)
	}
	if string(sector[:8]) != "EFI PART" {
		return nil, fmt.Errorf("LBA %d: %w", lba, ErrNoGPT)
	}
	size := binary.LittleEndian.Uint32(sector[12:])
	if size < 92 || size > 512 {
		return nil, fmt.Errorf("GPT header at LBA %d: size %d", lba, size)
	}
	return sector, nil
}

type tableWrite struct {
	data []byte
	off  int64
}

func rewriteEntries(disk io.ReaderAt, hdr []byte, uuids map[string]string) ([]tableWrite, error) {
	lba := binary.LittleEndian.Uint64(hdr[24:])
	entriesLBA := binary.LittleEndian.Uint64(hdr[72:])
	count := binary.LittleEndian.Uint32(hdr[80:])
	size := binary.LittleEndian.Uint32(hdr[84:])
	if count > 1024 || size < 128 || size > 4096 {
		return nil, fmt.Errorf("GPT header at LBA %d: implausible %d entries of %d bytes", lba, count, size)
	}
	buf := make([]byte, int(count)*int(size))
	if _, err := disk.ReadAt(buf, int64(entriesLBA)*512); err != nil {
		return nil, fmt.Errorf("read GPT entries at LBA %d: %w", entriesLBA, err)
	}
	if crc32.ChecksumIEEE(buf) != binary.LittleEndian.Uint32(hdr[88:]) {
		return nil, fmt.Errorf("GPT entries at LBA %d: CRC mismatch, refusing to rewrite a damaged table", entriesLBA)
	}
	found := map[string]bool{}
	for i := 0; i < int(count); i++ {
		e := buf[i*int(size) : (i+1)*int(size)]
		label := utf16Label(e[56:128])
		u, ok := uuids[label]
		if !ok || efi.GUID(e[0:16]) == (efi.GUID{}) {
			continue
		}
		g, err := efi.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("partition %s: %w", label, err)
		}
		copy(e[16:32], g[:])
		found[label] = true
	}
	for label := range uuids {
		if !found[label] {
			return nil, fmt.Errorf("GPT has no partition labelled %q", label)
		}
	}
	binary.LittleEndian.PutUint32(hdr[88:], crc32.ChecksumIEEE(buf))
	hsize := binary.LittleEndian.Uint32(hdr[12:])
	binary.LittleEndian.PutUint32(hdr[16:], 0)
	binary.LittleEndian.PutUint32(hdr[16:], crc32.ChecksumIEEE(hdr[:hsize]))
	return []tableWrite{{buf, int64(entriesLBA) * 512}, {hdr, int64(lba) * 512}}, nil
}

// FindBootDisk returns the block device (/dev/vda) whose GPT has the kubedos
// partitions, and its partitions; kubedosd uses it to write the other slot.
func FindBootDisk() (string, []Partition, error) {
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		return "", nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "dm-") {
			continue
		}
		parts, err := readDiskGPT(filepath.Join("/dev", name))
		if err != nil {
			continue
		}
		if _, ok := PartitionByLabel(parts, LabelState); ok {
			return filepath.Join("/dev", name), parts, nil
		}
	}
	return "", nil, errors.New("no disk with a kubedos partition table (a partition labelled \"state\")")
}
