package measure

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const systemdMeasure = "/usr/lib/systemd/systemd-measure"

// TestSystemdMeasureAgrees: systemd 252's own calculator gives the same PCR 11
// values, at every boot phase, for several section sets (including the
// optional .splash, .dtb and .pcrpkey, which pins down the stub order).
func TestSystemdMeasureAgrees(t *testing.T) {
	if _, err := os.Stat(systemdMeasure); err != nil {
		t.Skipf("%s not installed (Debian package systemd)", systemdMeasure)
	}
	all := UKISections{
		Linux:   bytes.Repeat([]byte("MZ kernel "), 3000),
		OSRel:   []byte("ID=kubedos\nVERSION_ID=1\n"),
		Cmdline: []byte("root=PARTLABEL=root-a kubedos.roothash=00ff"),
		Initrd:  bytes.Repeat([]byte{0x07, 0x07, 0x01}, 5001),
		Splash:  []byte("BM splash"),
		DTB:     []byte{0xd0, 0x0d, 0xfe, 0xed},
		PCRPKey: []byte("-----BEGIN PUBLIC KEY-----\n"),
	}
	sets := map[string]UKISections{
		"all":          all,
		"kubedos":      {Linux: all.Linux, OSRel: all.OSRel, Cmdline: all.Cmdline, Initrd: all.Initrd},
		"linux only":   {Linux: all.Linux},
		"no initrd":    {Linux: all.Linux, Cmdline: all.Cmdline, DTB: all.DTB},
		"pcrpkey last": {Linux: all.Linux, PCRPKey: all.PCRPKey, Splash: all.Splash},
	}
	flags := []string{"--linux", "--osrel", "--cmdline", "--initrd", "--splash", "--dtb", "--pcrpkey"}
	for name, u := range sets {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"calculate", "--bank=sha256", "--json=short"}
			for i, b := range [][]byte{u.Linux, u.OSRel, u.Cmdline, u.Initrd, u.Splash, u.DTB, u.PCRPKey} {
				if len(b) == 0 {
					continue
				}
				f := filepath.Join(dir, strings.TrimPrefix(flags[i], "--"))
				if err := os.WriteFile(f, b, 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, flags[i]+"="+f)
			}
			for _, ph := range BootPhases {
				args = append(args, "--phase="+strings.Join(ph.Words, ":"))
			}
			got := runSystemdMeasure(t, args)

			// 257 measures these sections in 252's order too: both
			// tables must agree with whichever systemd-measure is here.
			for _, release := range []Stub{Stub252, Stub257} {
				events, err := PredictPCR11(release, u.Sections())
				if err != nil {
					t.Fatal(err)
				}
				stub, err := Replay(events)
				if err != nil {
					t.Fatal(err)
				}
				for _, ph := range BootPhases {
					want := fmt.Sprintf("%x", PCR11AtPhase(stub, ph.Words...))
					if g := got[strings.Join(ph.Words, ":")]; g != want {
						t.Errorf("stub %d, phase %s: systemd-measure %s, we %s", release.Version, ph.Name, g, want)
					}
				}
			}
		})
	}
}

// runSystemdMeasure returns the sha256 PCR 11 value per phase ("" for none).
func runSystemdMeasure(t *testing.T, args []string) map[string]string {
	t.Helper()
	out, err := exec.Command(systemdMeasure, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("systemd-measure %v: %v: %s", args, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var res struct {
		SHA256 []struct {
			Phase string `json:"phase"`
			PCR   int    `json:"pcr"`
			Hash  string `json:"hash"`
		} `json:"sha256"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("systemd-measure output %q: %v", out, err)
	}
	m := map[string]string{}
	for _, r := range res.SHA256 {
		if r.PCR != PCRKernelImage {
			t.Fatalf("systemd-measure reported PCR %d", r.PCR)
		}
		m[r.Phase] = r.Hash
	}
	return m
}
