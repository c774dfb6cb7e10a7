package ociarchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func pause() Image {
	return Image{Name: "kubedos.local/pause:3.10", Architecture: "amd64", OS: "linux",
		Entrypoint: []string{"/catatonit", "-P"}, User: "65535:65535",
		Files:   []File{{Path: "catatonit", Data: []byte("\x7fELF static init"), Mode: 0o755}, {Path: "etc/nsswitch.conf", Data: []byte("hosts: files\n"), Mode: 0o644}},
		Created: time.Unix(1700000000, 0)}
}

// readTar reads an archive into name → (header, data), in order.
func readTar(t *testing.T, b []byte) ([]string, map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	var names []string
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, hdrs, data
		}
		if err != nil {
			t.Fatal(err)
		}
		d, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		hdrs[h.Name], data[h.Name] = h, d
	}
}

func blob(t *testing.T, data map[string][]byte, digest string) []byte {
	t.Helper()
	b, ok := data["blobs/sha256/"+strings.TrimPrefix(digest, "sha256:")]
	if !ok {
		t.Fatalf("no blob %s", digest)
	}
	sum := sha256.Sum256(b)
	if "sha256:"+hex.EncodeToString(sum[:]) != digest {
		t.Fatalf("blob %s has another digest", digest)
	}
	return b
}

func TestArchiveLayout(t *testing.T) {
	img := pause()
	b, res, err := Archive(img)
	if err != nil {
		t.Fatal(err)
	}
	names, _, data := readTar(t, b)
	if names[0] != "oci-layout" || names[1] != "index.json" {
		t.Errorf("archive starts %v", names[:2])
	}
	var idx index
	if err := json.Unmarshal(data["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != res.Manifest || idx.MediaType != MediaTypeIndex {
		t.Fatalf("index %+v, result %+v", idx, res)
	}
	d := idx.Manifests[0]
	if d.Annotations[AnnotationRefName] != img.Name || d.Annotations[AnnotationCtrName] != img.Name ||
		d.Platform == nil || d.Platform.Architecture != "amd64" || d.Platform.OS != "linux" {
		t.Errorf("index descriptor %+v", d)
	}
	var man manifest
	if err := json.Unmarshal(blob(t, data, res.Manifest), &man); err != nil {
		t.Fatal(err)
	}
	if man.Config.Digest != res.Config || len(man.Layers) != 1 || man.Layers[0].Digest != res.Layer || man.Layers[0].MediaType != MediaTypeLayer {
		t.Fatalf("manifest %+v", man)
	}
	var cfg config
	if err := json.Unmarshal(blob(t, data, res.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/catatonit -P" || cfg.Config.User != "65535:65535" || cfg.Created != "2023-11-14T22:13:20Z" {
		t.Errorf("config %+v", cfg)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(t, data, res.Layer)))
	if err != nil {
		t.Fatal(err)
	}
	layerTar, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(layerTar)
	if d := "sha256:" + hex.EncodeToString(sum[:]); len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != d || res.DiffID != d {
		t.Errorf("diff_ids %v, layer %s", cfg.RootFS.DiffIDs, d)
	}
	lnames, lh, ldata := readTar(t, layerTar)
	if strings.Join(lnames, " ") != "catatonit etc/ etc/nsswitch.conf" {
		t.Errorf("layer entries %v", lnames)
	}
	for n, h := range lh {
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(img.Created) {
			t.Errorf("layer %s: owner %d:%d %q:%q, mtime %v", n, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
	}
	if lh["catatonit"].Mode != 0o755 || string(ldata["catatonit"]) != string(img.Files[0].Data) || lh["etc/"].Typeflag != tar.TypeDir {
		t.Errorf("catatonit %o %q; etc/ %c", lh["catatonit"].Mode, ldata["catatonit"], lh["etc/"].Typeflag)
	}
}

func TestArchiveDeterministic(t *testing.T) {
	a, ra, err := Archive(pause())
	if err != nil {
		t.Fatal(err)
	}
	// The same files given in another order are the same image.
	img := pause()
	img.Files[0], img.Files[1] = img.Files[1], img.Files[0]
	b, rb, err := Archive(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || *ra != *rb {
		t.Fatalf("same image, different archives: %+v %+v", ra, rb)
	}
	img.Files[0].Data = []byte("hosts: dns\n")
	_, rc, err := Archive(img)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Manifest == ra.Manifest || rc.DiffID == ra.DiffID {
		t.Error("a changed file did not change the digests")
	}
	img = pause()
	img.Name = "kubedos.local/pause:3.11"
	_, rd, err := Archive(img)
	if err != nil {
		t.Fatal(err)
	}
	// The name is the index's, not the image's: same manifest.
	if rd.Manifest != ra.Manifest {
		t.Error("the name changed the manifest")
	}
}

func TestRefusesBadInput(t *testing.T) {
	for name, mutate := range map[string]func(*Image){
		"no name":            func(i *Image) { i.Name = "" },
		"no tag":             func(i *Image) { i.Name = "kubedos.local/pause" },
		"upper case":         func(i *Image) { i.Name = "kubedos.local/Pause:1" },
		"digest":             func(i *Image) { i.Name = "kubedos.local/pause@sha256:" + strings.Repeat("a", 64) },
		"space":              func(i *Image) { i.Name = "kubedos.local/pause:1 x" },
		"no platform":        func(i *Image) { i.Architecture = "" },
		"no entrypoint":      func(i *Image) { i.Entrypoint = nil },
		"no files":           func(i *Image) { i.Files = nil },
		"absolute path":      func(i *Image) { i.Files[0].Path = "/catatonit" },
		"dot dot":            func(i *Image) { i.Files[0].Path = "../catatonit" },
		"unclean":            func(i *Image) { i.Files[0].Path = "etc//x" },
		"duplicate":          func(i *Image) { i.Files[1].Path = i.Files[0].Path },
		"file under a file":  func(i *Image) { i.Files[1].Path = "catatonit/x" },
		"setuid is not perm": func(i *Image) { i.Files[0].Mode |= 1 << 23 },
	} {
		img := pause()
		img.Files = append([]File(nil), img.Files...)
		mutate(&img)
		var b bytes.Buffer
		if _, err := Write(&b, img); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
		if b.Len() != 0 {
			t.Errorf("%s: %d bytes written for a refused image", name, b.Len())
		}
	}
	for _, ok := range []string{"pause:1", "kubedos.local/pause:3.10", "localhost:5000/a/b-c.d:v1_x", "kubedos.local/probe:1"} {
		img := pause()
		img.Name = ok
		if _, _, err := Archive(img); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
