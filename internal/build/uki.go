package build

import (
	"context"
	"crypto/rsa"
	"debug/pe"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/tpmseal"
)

// UKIInput is what a unified kernel image is assembled from.
type UKIInput struct {
	Stub    string // systemd-stub (linuxx64.efi.stub)
	Kernel  string
	Initrd  string
	Cmdline string
	OSRel   string
	// PCRPKey, when set, is the PCR policy key (PEM) for a .pcrpkey
	// section: measured into PCR 11, handed to the initrd by the stub as
	// /.extra/tpm2-pcr-public-key.pem.
	PCRPKey []byte
}

// sectionAlign is the page alignment OVMF's memory protection needs for
// each section's address.
const sectionAlign = 4096

// MakeUKI adds .osrel, .cmdline, .linux, .initrd (and .pcrpkey) to the stub with objcopy,
// each at a page-aligned address after the stub's own sections, then clears
// the two header fields objcopy fills from the clock, for reproducibility.
func MakeUKI(ctx context.Context, in UKIInput, out string) error {
	dir, err := os.MkdirTemp("", "kubedos-uki-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cmdline, osrel, pcrpkey := dir+"/cmdline", dir+"/osrel", dir+"/pcrpkey"
	if err := os.WriteFile(cmdline, []byte(in.Cmdline), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(osrel, []byte(in.OSRel), 0o644); err != nil {
		return err
	}
	end, err := peImageEnd(in.Stub)
	if err != nil {
		return err
	}
	args := []string{}
	next := alignUp(end, sectionAlign)
	sections := []struct{ name, file string }{{".osrel", osrel}, {".cmdline", cmdline}, {".linux", in.Kernel}, {".initrd", in.Initrd}}
	if len(in.PCRPKey) > 0 {
		if err := os.WriteFile(pcrpkey, in.PCRPKey, 0o644); err != nil {
			return err
		}
		sections = append(sections, struct{ name, file string }{".pcrpkey", pcrpkey})
	}
	for _, s := range sections {
		st, err := os.Stat(s.file)
		if err != nil {
			return fmt.Errorf("uki section %s: %w", s.name, err)
		}
		args = append(args, "--add-section", s.name+"="+s.file, "--change-section-vma", fmt.Sprintf("%s=0x%x", s.name, next))
		next = alignUp(next+uint64(st.Size()), sectionAlign)
	}
	return durable.Produce(out, func(tmp string) error {
		if _, err := runTool(ctx, nil, "objcopy", append(args, in.Stub, tmp)...); err != nil {
			return fmt.Errorf("assemble UKI: %w", err)
		}
		return clearPETimestamps(tmp)
	})
}

// AddUKISection copies the UKI in to out with one more section, content,
// at the next page-aligned address after its last one.
func AddUKISection(ctx context.Context, in, name string, content []byte, out string) error {
	dir, err := os.MkdirTemp("", "kubedos-uki-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "section")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		return err
	}
	end, err := peImageEnd(in)
	if err != nil {
		return err
	}
	args := []string{"--add-section", name + "=" + file, "--change-section-vma", fmt.Sprintf("%s=0x%x", name, alignUp(end, sectionAlign)), in}
	return durable.Produce(out, func(tmp string) error {
		if _, err := runTool(ctx, nil, "objcopy", append(args, tmp)...); err != nil {
			return fmt.Errorf("add UKI section %s: %w", name, err)
		}
		return clearPETimestamps(tmp)
	})
}

// PCR11Values are the PCR 11 values a UKI leaves at each boot phase
// (measure.BootPhases): what its .pcrsig must sign.
func PCR11Values(uki string) ([][]byte, error) {
	f, err := os.Open(uki)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	release, sections, err := measure.SectionsFromPE(f)
	if err != nil {
		return nil, err
	}
	events, err := measure.PredictPCR11(release, sections)
	if err != nil {
		return nil, err
	}
	stub, err := measure.Replay(events)
	if err != nil {
		return nil, err
	}
	var values [][]byte
	for _, ph := range measure.BootPhases {
		values = append(values, measure.PCR11AtPhase(stub, ph.Words...))
	}
	return values, nil
}

// PCRSig is what a UKI's .pcrsig section holds: its PCR11Values, signed by
// the PCR policy key (tpm2-pcr-signature.json).
func PCRSig(uki string, key *rsa.PrivateKey) ([]byte, error) {
	values, err := PCR11Values(uki)
	if err != nil {
		return nil, err
	}
	sigs, err := tpmseal.Sign(key, values)
	if err != nil {
		return nil, err
	}
	return sigs.Marshal()
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) / a * a }

// peImageEnd is the highest address (image base + RVA + size) of the stub's sections.
func peImageEnd(path string) (uint64, error) {
	f, err := pe.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read stub %s: %w", path, err)
	}
	defer f.Close()
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		return 0, fmt.Errorf("stub %s is not a PE32+ image", path)
	}
	var end uint64
	for _, s := range f.Sections {
		if e := oh.ImageBase + uint64(s.VirtualAddress) + uint64(s.VirtualSize); e > end {
			end = e
		}
	}
	return end, nil
}

// clearPETimestamps zeroes the COFF TimeDateStamp and the optional-header
// CheckSum; signing recomputes what it needs.
func clearPETimestamps(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var off [4]byte
	if _, err := f.ReadAt(off[:], 0x3c); err != nil {
		return fmt.Errorf("read PE offset of %s: %w", path, err)
	}
	peOff := int64(binary.LittleEndian.Uint32(off[:]))
	zero := make([]byte, 4)
	if _, err := f.WriteAt(zero, peOff+8); err != nil { // COFF TimeDateStamp
		return err
	}
	if _, err := f.WriteAt(zero, peOff+24+64); err != nil { // optional header CheckSum
		return err
	}
	return f.Close()
}
