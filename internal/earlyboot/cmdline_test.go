package earlyboot

import (
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	good := Config{Build: "0123abcd", RootHash: hash, Salt: hash, DataBlocks: 1024}
	tests := []struct {
		name, cmdline string
		want          Config
		errs          []string
	}{
		{"round trip", "console=ttyS0 " + good.Cmdline() + " panic=-1", good, nil},
		{"missing all", "console=ttyS0", Config{}, []string{KeyBuild, KeyRootHash, KeySalt, KeyDataBlocks}},
		{"short hash", strings.Replace(good.Cmdline(), "roothash="+hash, "roothash=abcd", 1), Config{}, []string{KeyRootHash}},
		{"upper-case hash", strings.Replace(good.Cmdline(), "roothash="+hash, "roothash="+strings.ToUpper(hash), 1), Config{}, []string{KeyRootHash}},
		{"zero blocks", strings.Replace(good.Cmdline(), "datablocks=1024", "datablocks=0", 1), Config{}, []string{KeyDataBlocks}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCmdline(tt.cmdline)
			if len(tt.errs) == 0 {
				if err != nil || got != tt.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %q", tt.cmdline)
			}
			for _, e := range tt.errs {
				if !strings.Contains(err.Error(), e) {
					t.Errorf("error %q does not name %s", err, e)
				}
			}
		})
	}
}

func TestVerityTable(t *testing.T) {
	p := VerityParams{DataDevice: "/dev/vda2", HashDevice: "/dev/vda3", DataBlocks: 10, RootHash: "aa", Salt: "bb"}
	want := "1 /dev/vda2 /dev/vda3 4096 4096 10 1 sha256 aa bb 1 panic_on_corruption"
	if got := p.Table(); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestPartitionNode(t *testing.T) {
	for disk, want := range map[string]string{"vda": "/dev/vda3", "nvme0n1": "/dev/nvme0n1p3", "sda": "/dev/sda3"} {
		if got := PartitionNode(disk, 3); got != want {
			t.Errorf("%s: got %s, want %s", disk, got, want)
		}
	}
}

func FuzzReadGPT(f *testing.F) {
	f.Add(make([]byte, 4096))
	hdr := make([]byte, 2048)
	copy(hdr[512:], "EFI PART")
	f.Add(hdr)
	f.Fuzz(func(t *testing.T, disk []byte) {
		_, _ = ReadGPT(strings.NewReader(string(disk)))
	})
}
