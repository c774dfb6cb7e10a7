package earlyboot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Device-mapper ioctls, written by hand: the kernel ABI (linux/dm-ioctl.h) is
// small and stable, and no maintained Go library for it is reachable here.
// Only what opening a verity or crypt device needs: create, load a table,
// resume.

const (
	dmIoctlSize   = 312 // sizeof(struct dm_ioctl)
	dmTargetSize  = 40  // sizeof(struct dm_target_spec)
	dmNameLen     = 128
	dmUUIDLen     = 129
	dmReadOnly    = 1 << 0
	dmDevCreate   = 3
	dmDevSuspend  = 6
	dmTableLoad   = 9
	dmControlPath = "/dev/mapper/control"
)

func dmIoctlNumber(cmd uintptr) uintptr {
	const iocReadWrite = 3
	return iocReadWrite<<30 | dmIoctlSize<<16 | 0xfd<<8 | cmd
}

// dmHeader is struct dm_ioctl laid out field by field.
type dmHeader struct {
	Version     [3]uint32
	DataSize    uint32
	DataStart   uint32
	TargetCount uint32
	OpenCount   int32
	Flags       uint32
	EventNr     uint32
	Padding     uint32
	Dev         uint64
	Name        [dmNameLen]byte
	UUID        [dmUUIDLen]byte
	Data        [7]byte
}

type dmTarget struct {
	SectorStart uint64
	Length      uint64
	Status      int32
	Next        uint32
	TargetType  [16]byte
}

func init() {
	if unsafe.Sizeof(dmHeader{}) != dmIoctlSize || unsafe.Sizeof(dmTarget{}) != dmTargetSize {
		panic("earlyboot: device-mapper struct sizes do not match the kernel ABI")
	}
}

// VerityParams describes a dm-verity mapping of a data device by a hash device.
type VerityParams struct {
	DataDevice, HashDevice string
	DataBlocks             uint64
	RootHash, Salt         string // hex
}

// Table renders the kernel's verity target line. The hash tree starts after
// veritysetup's superblock (hash block 1); any corruption panics the kernel,
// so a tampered root never runs.
func (p VerityParams) Table() string {
	return fmt.Sprintf("1 %s %s 4096 4096 %d 1 sha256 %s %s 1 panic_on_corruption",
		p.DataDevice, p.HashDevice, p.DataBlocks, p.RootHash, p.Salt)
}

// OpenVerity creates a read-only device-mapper device name mapping p and
// returns its device number.
func OpenVerity(name string, p VerityParams) (uint64, error) {
	return openDM(name, "", dmReadOnly, &targetLine{"verity", p.DataBlocks * 4096 / 512, p.Table()})
}

// CryptParams describes a plain dm-crypt mapping of part of a device.
type CryptParams struct {
	Device string
	Key    []byte // StateKeySize bytes
	// Offset and Size locate the encrypted data on Device, in bytes
	// (multiples of 4096).
	Offset, Size uint64
}

// Table renders the kernel's crypt target line: AES-256 in XTS mode, the
// sector number as IV, 4 KiB crypto sectors (eight times fewer requests
// than 512-byte ones). The offset stays in 512-byte units, as the kernel
// counts it. The line holds the key: it goes to the kernel, nowhere else
// (kubedos-init's memory, with every copy, ends when it execs systemd).
func (p CryptParams) Table() string {
	return fmt.Sprintf("aes-xts-plain64 %x 0 %s %d 1 sector_size:%d", p.Key, p.Device, p.Offset/512, stateSectorSize)
}

func (p CryptParams) check() error {
	if len(p.Key) != StateKeySize {
		return fmt.Errorf("crypt key is %d bytes, want %d", len(p.Key), StateKeySize)
	}
	if p.Offset%stateSectorSize != 0 || p.Size == 0 || p.Size%stateSectorSize != 0 {
		return fmt.Errorf("crypt extent %d+%d is not in whole %d-byte sectors", p.Offset, p.Size, stateSectorSize)
	}
	return nil
}

// OpenCrypt creates a read-write device-mapper device name decrypting p
// and returns its device number. The device's UUID starts with CRYPT-, as
// cryptsetup's do, so lsblk and udev call it a crypt device.
func OpenCrypt(name string, p CryptParams) (uint64, error) {
	if err := p.check(); err != nil {
		return 0, err
	}
	return openDM(name, "CRYPT-PLAIN-"+name, 0, &targetLine{"crypt", p.Size / 512, p.Table()})
}

func openDM(name, uuid string, flags uint32, t *targetLine) (uint64, error) {
	ctl, err := os.OpenFile(dmControlPath, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s (is dm-mod loaded?): %w", dmControlPath, err)
	}
	defer ctl.Close()
	fd := ctl.Fd()
	if _, err := dmCall(fd, dmDevCreate, name, uuid, 0, nil); err != nil {
		return 0, fmt.Errorf("dm create %s: %w", name, err)
	}
	if _, err := dmCall(fd, dmTableLoad, name, "", flags, t); err != nil {
		return 0, fmt.Errorf("dm load %s table for %s: %w", t.kind, name, err)
	}
	h, err := dmCall(fd, dmDevSuspend, name, "", 0, nil) // no suspend flag: resume, making the table live
	if err != nil {
		return 0, fmt.Errorf("dm resume %s: %w", name, err)
	}
	return h.Dev, nil
}

type targetLine struct {
	kind    string
	sectors uint64
	params  string
}

func dmCall(fd uintptr, cmd uintptr, name, uuid string, flags uint32, t *targetLine) (*dmHeader, error) {
	var body bytes.Buffer
	h := dmHeader{Version: [3]uint32{4, 0, 0}, DataStart: dmIoctlSize, Flags: flags}
	copy(h.Name[:dmNameLen-1], name)
	copy(h.UUID[:dmUUIDLen-1], uuid)
	if t != nil {
		h.TargetCount = 1
		params := t.encode()
		spec := dmTarget{Length: t.sectors, Next: uint32(dmTargetSize + len(params))}
		copy(spec.TargetType[:15], t.kind)
		_ = binary.Write(&body, binary.NativeEndian, spec)
		body.Write(params)
	}
	// Room for the kernel's reply beyond the header.
	buf := make([]byte, dmIoctlSize+body.Len()+4096)
	h.DataSize = uint32(len(buf))
	var hb bytes.Buffer
	_ = binary.Write(&hb, binary.NativeEndian, h)
	copy(buf, hb.Bytes())
	copy(buf[dmIoctlSize:], body.Bytes())
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, dmIoctlNumber(cmd), uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return nil, errno
	}
	var out dmHeader
	if err := binary.Read(bytes.NewReader(buf[:dmIoctlSize]), binary.NativeEndian, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// encode is the target's parameters, NUL-terminated and padded so the next
// target spec would be 8-byte aligned.
func (t *targetLine) encode() []byte {
	params := append([]byte(t.params), 0)
	for (dmTargetSize+len(params))%8 != 0 {
		params = append(params, 0)
	}
	return params
}
