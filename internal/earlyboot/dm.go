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
// Only what opening a verity device needs: create, load a table, resume.

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
	ctl, err := os.OpenFile(dmControlPath, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s (is dm-mod loaded?): %w", dmControlPath, err)
	}
	defer ctl.Close()
	fd := ctl.Fd()
	if _, err := dmCall(fd, dmDevCreate, name, 0, nil); err != nil {
		return 0, fmt.Errorf("dm create %s: %w", name, err)
	}
	sectors := p.DataBlocks * 4096 / 512
	if _, err := dmCall(fd, dmTableLoad, name, dmReadOnly, &targetLine{"verity", sectors, p.Table()}); err != nil {
		return 0, fmt.Errorf("dm load verity table for %s: %w", name, err)
	}
	h, err := dmCall(fd, dmDevSuspend, name, 0, nil) // no suspend flag: resume, making the table live
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

func dmCall(fd uintptr, cmd uintptr, name string, flags uint32, t *targetLine) (*dmHeader, error) {
	var body bytes.Buffer
	h := dmHeader{Version: [3]uint32{4, 0, 0}, DataStart: dmIoctlSize, Flags: flags}
	copy(h.Name[:dmNameLen-1], name)
	if t != nil {
		h.TargetCount = 1
		params := append([]byte(t.params), 0)
		for (dmTargetSize+len(params))%8 != 0 {
			params = append(params, 0)
		}
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
