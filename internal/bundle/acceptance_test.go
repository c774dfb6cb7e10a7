package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
)

// sealed writes a signed acceptance record of build b-1234 into src's
// build directory and returns its bytes and signature.
func sealed(t *testing.T, src Source, ks *sign.KeySet, edit func(*manifest.Acceptance)) ([]byte, []byte) {
	t.Helper()
	a := manifest.Acceptance{APIVersion: "kubedos.io/v1alpha1", Kind: manifest.AcceptanceKind, Cluster: "t", BuildID: "b-1234",
		Time: time.Date(2026, 12, 5, 22, 0, 0, 0, time.UTC), Nodes: []manifest.AcceptanceNode{{Name: "master", Role: "master", EKHash: "ek"}},
		AuditHead: manifest.AuditHead{Seq: 9, Hash: strings.Repeat("ab", 32)}}
	if edit != nil {
		edit(&a)
	}
	raw, sig := signedJSON(t, ks, a)
	if err := os.WriteFile(filepath.Join(src.BuildDir, manifest.AcceptanceFile), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src.BuildDir, manifest.AcceptanceSigFile), sig, 0o644); err != nil {
		t.Fatal(err)
	}
	return raw, sig
}

// TestAcceptanceRefused: a build whose acceptance record was changed after
// sealing, signed by a stranger, of another build or missing its signature
// is refused before a byte is written, naming the file.
func TestAcceptanceRefused(t *testing.T) {
	ks, other := keys(t)
	for _, tc := range []struct {
		name  string
		setup func(src Source)
		want  string
	}{
		{"tampered after sealing", func(src Source) {
			raw, _ := sealed(t, src, ks, nil)
			_ = os.WriteFile(filepath.Join(src.BuildDir, manifest.AcceptanceFile), bytes.Replace(raw, []byte(`"seq":9`), []byte(`"seq":8`), 1), 0o644)
		}, manifest.AcceptanceFile + ": acceptance record signature"},
		{"signed by a stranger", func(src Source) { sealed(t, src, other, nil) }, manifest.AcceptanceFile + ": acceptance record signature"},
		{"of another build", func(src Source) { sealed(t, src, ks, func(a *manifest.Acceptance) { a.BuildID = "b-9" }) }, "not of this build"},
		{"without its signature", func(src Source) {
			sealed(t, src, ks, nil)
			_ = os.Remove(filepath.Join(src.BuildDir, manifest.AcceptanceSigFile))
		}, "without its signature"},
		{"a signature alone", func(src Source) {
			sealed(t, src, ks, nil)
			_ = os.Remove(filepath.Join(src.BuildDir, manifest.AcceptanceFile))
		}, "without its acceptance record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := fixture(t, ks)
			tc.setup(src)
			out := filepath.Join(t.TempDir(), "b.tar")
			_, err := Create(context.Background(), src, out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Error("a refused bundle was written")
			}
		})
	}
}

// TestAcceptanceCarried: a sealed build's bundle carries the record and its
// signature under build/<id>/; verify checks the record's own signature
// and reports it, and a crafted bundle (index re-signed) whose record's
// signature does not verify is refused naming the record.
func TestAcceptanceCarried(t *testing.T) {
	ks, _ := keys(t)
	src := fixture(t, ks)
	snap := manifest.AcceptanceEtcdSnapshot{Name: "etcd-20261205T210000Z-cp-1.db", Member: "cp-1", Taken: time.Date(2026, 12, 5, 21, 0, 0, 0, time.UTC),
		Bytes: 4096, SHA256: strings.Repeat("ab", 32)}
	raw, sig := sealed(t, src, ks, func(a *manifest.Acceptance) { a.EtcdSnapshot = &snap })
	out := filepath.Join(t.TempDir(), "b.tar")
	if _, err := Create(context.Background(), src, out); err != nil {
		t.Fatal(err)
	}
	rec, sigName := path.Join(DirBuild, "b-1234", manifest.AcceptanceFile), path.Join(DirBuild, "b-1234", manifest.AcceptanceSigFile)
	got := members(t, out)
	if !bytes.Equal(got[rec], raw) || !bytes.Equal(got[sigName], sig) {
		t.Fatalf("bundle carries %q / %q", got[rec], got[sigName])
	}
	x, err := Verify(context.Background(), out, ks.SigningPub)
	if err != nil {
		t.Fatal(err)
	}
	if x.Acceptance == nil || x.Acceptance.AuditHead.Seq != 9 || x.Acceptance.Nodes[0].EKHash != "ek" ||
		x.Acceptance.EtcdSnapshot == nil || *x.Acceptance.EtcdSnapshot != snap {
		t.Errorf("verified record %+v", x.Acceptance)
	}
	dir := filepath.Join(t.TempDir(), "x")
	if x, err := Extract(context.Background(), out, dir, ks.SigningPub); err != nil || x.Acceptance == nil {
		t.Fatalf("extract: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rec))); !bytes.Equal(b, raw) {
		t.Error("extract did not unpack the record")
	}

	// An unsealed build's bundle has none.
	plain := filepath.Join(t.TempDir(), "p.tar")
	if _, err := Create(context.Background(), fixture(t, ks), plain); err != nil {
		t.Fatal(err)
	}
	if x, err := Verify(context.Background(), plain, ks.SigningPub); err != nil || x.Acceptance != nil {
		t.Errorf("unsealed: %+v %v", x, err)
	}

	// A record changed after sealing, listed with its new digest in an
	// index signed again: the index checks out, the record does not.
	tampered := bytes.Replace(raw, []byte(`"seq":9`), []byte(`"seq":8`), 1)
	x.Files = nil
	var entries []entry
	for name, data := range map[string][]byte{rec: tampered, sigName: sig} {
		x.Files = append(x.Files, manifest.FileEntry{Path: name, SHA256: hexSum(data), Size: int64(len(data))})
		entries = append(entries, entry{name, data, tar.TypeReg})
	}
	if x.Files[0].Path > x.Files[1].Path {
		x.Files[0], x.Files[1] = x.Files[1], x.Files[0]
	}
	idx, _ := json.Marshal(x)
	_, err = Verify(context.Background(), craft(t, ks, idx, entries), ks.SigningPub)
	if !errors.Is(err, ErrBad) || !strings.Contains(err.Error(), rec+": acceptance record signature") {
		t.Errorf("tampered record: %v", err)
	}
	// A record without its signature in the index.
	x.Files = x.Files[:1]
	if x.Files[0].Path != rec {
		x.Files[0] = manifest.FileEntry{Path: rec, SHA256: hexSum(tampered), Size: int64(len(tampered))}
	}
	idx, _ = json.Marshal(x)
	_, err = Verify(context.Background(), craft(t, ks, idx, []entry{{rec, tampered, tar.TypeReg}}), ks.SigningPub)
	if !errors.Is(err, ErrBad) || !strings.Contains(err.Error(), "come together") {
		t.Errorf("record alone: %v", err)
	}
}
