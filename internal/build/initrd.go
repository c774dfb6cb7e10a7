package build

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/earlyboot"
)

// InitrdInput is what goes into the kubedos initrd.
type InitrdInput struct {
	InitBinary string // static kubedos-init
	ModulesDir string // lib/modules/<version> of the root image
	Modules    []string
	// StateFS is the empty state filesystem in earlyboot's sparse format,
	// which kubedos-init writes into the encrypted state at first boot.
	StateFS []byte
	// DataFS is the same for the data partition.
	DataFS []byte
}

// BuildInitrd writes a reproducible gzip'd cpio: /init, the modules in
// dependency order, the list kubedos-init loads them from and the empty
// state filesystem.
func BuildInitrd(in InitrdInput, out string) error {
	initBin, err := os.ReadFile(in.InitBinary)
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	if err := checkStaticInit(initBin); err != nil {
		return fmt.Errorf("initrd: /init from %s: %w", in.InitBinary, err)
	}
	mods, err := resolveModules(in.ModulesDir, in.Modules)
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	entries := []cpioEntry{
		{Path: "init", Mode: cpioFile | 0o755, Data: initBin},
		{Path: "etc", Mode: cpioDir | 0o755}, {Path: "etc/kubedos", Mode: cpioDir | 0o755},
		{Path: "lib", Mode: cpioDir | 0o755}, {Path: "lib/modules", Mode: cpioDir | 0o755},
		{Path: "lib/modules/kubedos", Mode: cpioDir | 0o755},
		{Path: "dev", Mode: cpioDir | 0o755}, {Path: "proc", Mode: cpioDir | 0o755},
		{Path: "sys", Mode: cpioDir | 0o755}, {Path: "run", Mode: cpioDir | 0o755},
		{Path: "sysroot", Mode: cpioDir | 0o755},
	}
	var list []string
	for _, m := range mods {
		data, err := readModule(m)
		if err != nil {
			return fmt.Errorf("initrd: %w", err)
		}
		name := moduleName(m)
		list = append(list, name)
		entries = append(entries, cpioEntry{Path: "lib/modules/kubedos/" + name, Mode: cpioFile | 0o644, Data: data})
	}
	entries = append(entries, cpioEntry{Path: "etc/kubedos/modules", Mode: cpioFile | 0o644, Data: []byte(strings.Join(list, "\n") + "\n")})
	if in.StateFS != nil {
		entries = append(entries, cpioEntry{Path: strings.TrimPrefix(earlyboot.StateFSFile, "/"), Mode: cpioFile | 0o644, Data: in.StateFS})
	}
	if in.DataFS != nil {
		entries = append(entries, cpioEntry{Path: strings.TrimPrefix(earlyboot.DataFSFile, "/"), Mode: cpioFile | 0o644, Data: in.DataFS})
	}
	var buf bytes.Buffer
	// gzip from the standard library writes no name or time: reproducible.
	// Level 6, not 9: on kubedos-init 2.5x faster for 0.4% more bytes
	// (once per role, so 8x in the reference build).
	zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err := writeCPIO(zw, entries); err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	return durable.WriteFile(out, buf.Bytes(), 0o644)
}

// checkStaticInit refuses an /init the kernel cannot run from this initrd,
// which holds no dynamic loader and no library: an ELF executable asking for
// an interpreter (kubedos-init built with cgo, i.e. without CGO_ENABLED=0)
// makes the kernel stop at "Failed to execute /init (error -2)".
func checkStaticInit(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("not an executable (ELF type %s)", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		interp, err := io.ReadAll(io.LimitReader(p.Open(), 4096))
		if err != nil {
			return fmt.Errorf("read its interpreter: %w", err)
		}
		return fmt.Errorf("dynamically linked (interpreter %s), and the initrd has no loader: build it static (CGO_ENABLED=0, as make build does)", strings.TrimRight(string(interp), "\x00"))
	}
	return nil
}
