package upgrade

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/earlyboot"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
)

const stub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

var (
	keysOnce sync.Once
	keysDir  string
	keys     *sign.KeySet
	keysErr  error
)

// testKeys makes one key set for the package (the ceremony takes a moment).
func testKeys(t *testing.T) *sign.KeySet {
	t.Helper()
	keysOnce.Do(func() {
		keysDir, keysErr = os.MkdirTemp("", "kubedos-upgrade-test-")
		if keysErr == nil {
			keys, keysErr = sign.InitKeys(context.Background(), filepath.Join(keysDir, "keys"), sign.InitOptions{Cluster: "t"})
		}
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return keys
}

func TestMain(m *testing.M) {
	code := m.Run()
	if keysDir != "" {
		os.RemoveAll(keysDir)
	}
	os.Exit(code)
}

func need(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"sfdisk", "objcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/setup.sh installs it)", tool)
		}
	}
	if _, err := os.Stat(stub); err != nil {
		t.Skipf("%s not installed (systemd-boot-efi)", stub)
	}
}

// image is one build's role files, as a node would receive them.
type image struct {
	id, rootHash      string
	root, verity, uki string
	manifest, sig     []byte
}

func randomFile(t *testing.T, dir, name string, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sum(t *testing.T, path string) (string, int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), int64(len(b))
}

// makeImage builds a role image for role "worker": random root and verity
// bytes, a real UKI (systemd-stub) naming the root hash, signed with ks's db
// key, and a manifest signed with ks's artifact key.
func makeImage(t *testing.T, ks *sign.KeySet, id string) image {
	t.Helper()
	dir := t.TempDir()
	img := image{id: id}
	img.root = randomFile(t, dir, "root", 1<<20+4096)
	img.verity = randomFile(t, dir, "verity", 64<<10)
	h := sha256.Sum256([]byte(id))
	img.rootHash = hex.EncodeToString(h[:])
	cmdline := build.BaseCmdline + " " + earlyboot.Config{Build: id, RootHash: img.rootHash, Salt: img.rootHash, DataBlocks: 256}.Cmdline()
	unsigned := filepath.Join(dir, "uki.unsigned")
	if err := build.MakeUKI(context.Background(), build.UKIInput{Stub: stub, Kernel: randomFile(t, dir, "kernel", 8192),
		Initrd: randomFile(t, dir, "initrd", 4096), Cmdline: cmdline, OSRel: "ID=debian\n"}, unsigned); err != nil {
		t.Fatal(err)
	}
	img.uki = filepath.Join(dir, "kubedos.efi")
	if err := sign.SignPE(context.Background(), unsigned, img.uki, ks.Path(sign.FileDBCert), ks.Path(sign.FileDBKey)); err != nil {
		t.Fatal(err)
	}
	m := manifest.Manifest{APIVersion: "kubedos.io/v1alpha1", Kind: "BuildManifest", Cluster: "t", BuildID: "build-" + id,
		Roles: map[string]manifest.RoleManifest{"worker": {RoleID: id, RootHash: img.rootHash, Salt: img.rootHash, DataBlocks: 256}}}
	for name, p := range map[string]string{manifest.FileRoot: img.root, manifest.FileVerity: img.verity, manifest.FileUKI: img.uki} {
		s, n := sum(t, p)
		m.Files = append(m.Files, manifest.FileEntry{Path: manifest.RoleFile("worker", name), SHA256: s, Size: n})
	}
	raw, _ := json.Marshal(m)
	key, err := sign.ReadSigningKey(ks.Path(sign.FileSigningKey))
	if err != nil {
		t.Fatal(err)
	}
	img.manifest = raw
	if img.sig, err = sign.SignBlob(key, raw); err != nil {
		t.Fatal(err)
	}
	return img
}

// node is a disk image with slot a holding the running build, and an ESP
// directory with its UKI.
type node struct {
	disk, esp string
	booted    Booted
}

func makeNode(t *testing.T, running image) node {
	t.Helper()
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 16<<20); err != nil {
		t.Fatal(err)
	}
	script := "label: gpt\nunit: sectors\nfirst-lba: 2048\n"
	for _, p := range []struct {
		label string
		size  int
	}{{"esp", 2048}, {"root-a", 4096}, {"verity-a", 512}, {"root-b", 4096}, {"verity-b", 512}, {"state", 2048}} {
		script += "size=" + strconv.Itoa(p.size) + ", type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=" + p.label + "\n"
	}
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", "--quiet", disk)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := earlyboot.SetPartUUIDs(f, map[string]string{"root-a": earlyboot.RootPartUUID(running.rootHash),
		"verity-a": earlyboot.VerityPartUUID(running.rootHash)}); err != nil {
		t.Fatal(err)
	}
	parts, _ := earlyboot.ReadGPT(f)
	for label, file := range map[string]string{"root-a": running.root, "verity-a": running.verity} {
		p, _ := earlyboot.PartitionByLabel(parts, label)
		if err := writeAt(f, file, p.Offset()); err != nil {
			t.Fatal(err)
		}
	}
	esp := filepath.Join(dir, "esp")
	if err := os.MkdirAll(filepath.Join(esp, earlyboot.ESPLinuxDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFileSync(running.uki, filepath.Join(esp, earlyboot.UKIEntryPath(1, running.id, 0))); err != nil {
		t.Fatal(err)
	}
	return node{disk: disk, esp: esp, booted: Booted{Role: "worker", Build: running.id, Slot: "a", RootHash: running.rootHash}}
}

func trust(ks *sign.KeySet) Trust {
	return Trust{Artifact: ks.SigningPub, DB: []*x509.Certificate{ks.DB}}
}

// stage sends an image's payload, chunked, as the node API would.
func stage(t *testing.T, tr Trust, booted Booted, img image, mutate func(part string, b []byte)) (*Staged, error) {
	t.Helper()
	s, err := Begin(tr, booted, img.manifest, img.sig, t.TempDir())
	if err != nil {
		return nil, err
	}
	for _, part := range Parts {
		b, err := os.ReadFile(map[string]string{PartRoot: img.root, PartVerity: img.verity, PartUKI: img.uki}[part])
		if err != nil {
			t.Fatal(err)
		}
		if mutate != nil {
			mutate(part, b)
		}
		for len(b) > 0 {
			n := min(len(b), 100<<10)
			if err := s.Write(part, b[:n]); err != nil {
				s.Abort()
				return nil, err
			}
			b = b[n:]
		}
	}
	st, err := s.Finish()
	if err != nil {
		s.Abort()
	}
	return st, err
}

func fileSum(t *testing.T, path string) string { s, _ := sum(t, path); return s }

func espNames(t *testing.T, esp string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(esp, earlyboot.ESPLinuxDir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range des {
		out = append(out, d.Name())
	}
	return out
}

func TestInstallBlessRollback(t *testing.T) {
	need(t)
	ks := testKeys(t)
	a, b := makeImage(t, ks, "aaaa1111"), makeImage(t, ks, "bbbb2222")
	n := makeNode(t, a)
	st, err := stage(t, trust(ks), n.booted, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Remove()
	f, err := os.OpenFile(n.disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []string
	res, err := Install(context.Background(), f, n.esp, n.booted, st, func(s string) { steps = append(steps, s) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Slot != "b" || res.Build != b.id || res.Entry != "EFI/Linux/kubedos-2-bbbb2222+3.efi" {
		t.Errorf("result %+v", res)
	}
	parts, _ := earlyboot.ReadGPT(f)
	if slot, err := earlyboot.FindSlot(parts, b.rootHash); err != nil || slot != "b" {
		t.Errorf("new root hash is in slot %q (%v)", slot, err)
	}
	if slot, err := earlyboot.FindSlot(parts, a.rootHash); err != nil || slot != "a" {
		t.Errorf("running root hash moved: slot %q (%v)", slot, err)
	}
	rootB, _ := earlyboot.PartitionByLabel(parts, "root-b")
	want, _ := os.ReadFile(b.root)
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, rootB.Offset()); err != nil || !bytes.Equal(got, want) {
		t.Error("root-b does not hold the new root")
	}
	if names := espNames(t, n.esp); strings.Join(names, " ") != "kubedos-1-aaaa1111.efi kubedos-2-bbbb2222+3.efi" {
		t.Errorf("ESP entries %v", names)
	}
	if len(steps) < 5 {
		t.Errorf("progress steps %v", steps)
	}
	// The new boot came up (systemd-boot counted one try) and is blessed.
	dir := filepath.Join(n.esp, earlyboot.ESPLinuxDir)
	if err := os.Rename(filepath.Join(dir, "kubedos-2-bbbb2222+3.efi"), filepath.Join(dir, "kubedos-2-bbbb2222+2-1.efi")); err != nil {
		t.Fatal(err)
	}
	nowB := Booted{Role: "worker", Build: b.id, Slot: "b", RootHash: b.rootHash}
	if _, err := stage(t, trust(ks), nowB, a, nil); err != nil {
		t.Fatal(err) // staging is harmless during a trial boot …
	}
	stA, _ := stage(t, trust(ks), nowB, a, nil)
	if _, err := Install(context.Background(), f, n.esp, nowB, stA, nil); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "on trial") {
		t.Errorf("install during a trial boot: %v", err) // … installing is not
	}
	name, err := Bless(n.esp, nowB)
	if err != nil || name != "kubedos-2-bbbb2222.efi" {
		t.Fatalf("bless: %q %v", name, err)
	}
	if name, err := Bless(n.esp, nowB); err != nil || name != "" {
		t.Errorf("second bless: %q %v", name, err)
	}
	// Rollback makes slot a's entry the next boot, with tries.
	rb, err := Rollback(f, n.esp, nowB)
	if err != nil || rb.Slot != "a" || rb.Build != a.id || rb.Entry != "EFI/Linux/kubedos-3-aaaa1111+3.efi" {
		t.Fatalf("rollback: %+v %v", rb, err)
	}
}

func TestStageRefusals(t *testing.T) {
	need(t)
	ks := testKeys(t)
	other := func() *sign.KeySet {
		o, err := sign.InitKeys(context.Background(), filepath.Join(t.TempDir(), "k"), sign.InitOptions{Cluster: "other"})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}()
	a, b := makeImage(t, ks, "aaaa1111"), makeImage(t, ks, "bbbb2222")
	foreign := makeImage(t, other, "cccc3333") // manifest and UKI from another key set
	wrongUKI := makeImage(t, ks, "dddd4444")
	wrongUKI.uki = foreign.uki // digest re-listed below, so only the signature is wrong
	{
		var m manifest.Manifest
		_ = json.Unmarshal(wrongUKI.manifest, &m)
		for i, f := range m.Files {
			if strings.HasSuffix(f.Path, manifest.FileUKI) {
				m.Files[i].SHA256, m.Files[i].Size = sum(t, foreign.uki)
			}
		}
		wrongUKI.manifest, _ = json.Marshal(m)
		key, _ := sign.ReadSigningKey(ks.Path(sign.FileSigningKey))
		wrongUKI.sig, _ = sign.SignBlob(key, wrongUKI.manifest)
	}
	n := makeNode(t, a)
	flip := func(part string) func(string, []byte) {
		return func(p string, b []byte) {
			if p == part {
				b[len(b)/2] ^= 1
			}
		}
	}
	tests := []struct {
		name   string
		img    image
		mutate func(string, []byte)
		booted Booted
		want   string
	}{
		{"one changed byte in the root", b, flip(PartRoot), n.booted, "root.squashfs: sha256"},
		{"one changed byte in the verity tree", b, flip(PartVerity), n.booted, "root.verity: sha256"},
		{"one changed byte in the UKI", b, flip(PartUKI), n.booted, "kubedos.efi: sha256"},
		{"manifest signed by another key", foreign, nil, n.booted, "manifest signature"},
		{"UKI signed by another db key", wrongUKI, nil, n.booted, "UKI signature"},
		{"the running build", a, nil, n.booted, "already runs"},
		{"a role the build lacks", b, nil, Booted{Role: "master", Build: a.id, Slot: "a", RootHash: a.rootHash}, "no image for role master"},
	}
	before := fileSum(t, n.disk)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := stage(t, trust(ks), tt.booted, tt.img, tt.mutate)
			if !errors.Is(err, ErrRefused) || errdefs.Class(err) != errdefs.ErrPrecondition || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want a refusal naming %q", err, tt.want)
			}
		})
	}
	if fileSum(t, n.disk) != before || strings.Join(espNames(t, n.esp), " ") != "kubedos-1-aaaa1111.efi" {
		t.Error("a refused payload changed the disk or the ESP")
	}
	s, err := Begin(trust(ks), n.booted, b.manifest, b.sig, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	if err := s.Write("etc/shadow", []byte("x")); !errors.Is(err, ErrRefused) {
		t.Errorf("unknown payload file: %v", err)
	}
	if err := s.Write(PartVerity, make([]byte, 64<<10+1)); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversized payload file: %v", err)
	}
	if _, err := s.Finish(); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "was not sent") {
		t.Errorf("incomplete payload: %v", err)
	}
}

// cutDisk simulates a power cut: every write after the first n fails, and
// nothing that Install would do after it happens.
type cutDisk struct {
	*os.File
	n, writes int
}

var errCut = errors.New("power cut")

func (c *cutDisk) WriteAt(b []byte, off int64) (int, error) {
	if c.writes >= c.n {
		return 0, errCut
	}
	c.writes++
	return c.File.WriteAt(b, off)
}

// bootsTo says which build systemd-boot would start and checks that the
// slot it names holds that build's bytes: the node is bootable.
func bootsTo(t *testing.T, disk, esp string, images map[string]image) string {
	t.Helper()
	entries, err := Entries(esp)
	if err != nil {
		t.Fatal(err)
	}
	var pick *Entry
	for i := range entries { // highest generation first; entries out of tries last
		if !entries[i].Bad() {
			pick = &entries[i]
			break
		}
	}
	if pick == nil {
		t.Fatalf("no bootable entry: %v", espNames(t, esp))
	}
	img := images[pick.Build]
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parts, _ := earlyboot.ReadGPT(f)
	slot, err := earlyboot.FindSlot(parts, img.rootHash)
	if err != nil {
		t.Fatalf("entry %s names a root no slot holds: %v", pick.Name(), err)
	}
	for label, file := range map[string]string{earlyboot.RootLabel(slot): img.root, earlyboot.VerityLabel(slot): img.verity} {
		p, _ := earlyboot.PartitionByLabel(parts, label)
		if err := compareAt(f, file, p.Offset()); err != nil {
			t.Fatalf("entry %s boots slot %s, but %s: %v", pick.Name(), slot, label, err)
		}
	}
	return pick.Build
}

// TestPowerCutAtEveryWrite cuts the power after each of Install's disk
// writes in turn: the node must always boot a whole build, the old one
// until the new one is complete.
func TestPowerCutAtEveryWrite(t *testing.T) {
	need(t)
	ks := testKeys(t)
	a, b := makeImage(t, ks, "aaaa1111"), makeImage(t, ks, "bbbb2222")
	images := map[string]image{a.id: a, b.id: b}
	for n := 0; ; n++ {
		nd := makeNode(t, a)
		st, err := stage(t, trust(ks), nd.booted, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(nd.disk, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		cd := &cutDisk{File: f, n: n}
		_, err = Install(context.Background(), cd, nd.esp, nd.booted, st, nil)
		f.Close()
		st.Remove()
		got := bootsTo(t, nd.disk, nd.esp, images)
		if err == nil {
			if got != b.id {
				t.Fatalf("a finished install boots %s", got)
			}
			if n < 3 {
				t.Fatalf("install finished with only %d writes: the cut points are not exercised", n)
			}
			return
		}
		if !errors.Is(err, errCut) {
			t.Fatalf("cut after %d writes: %v", n, err)
		}
		if got != a.id {
			t.Fatalf("cut after %d writes boots %s, want the old build", n, got)
		}
	}
}
