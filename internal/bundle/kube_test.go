package bundle

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/sign"
)

// kubeFixture is fixture's build made with Kubernetes: its provenance
// names the kube binary and the probe, which are written to bin/ with the
// kube SBOM describing sbomFor.
func kubeFixture(t *testing.T, ks *sign.KeySet, sbomFor []byte) (Source, []byte, []byte) {
	t.Helper()
	return kubeFixtureOf(t, ks, []byte("kube multicall binary"), sbomFor)
}

func kubeFixtureOf(t *testing.T, ks *sign.KeySet, kube, sbomFor []byte) (Source, []byte, []byte) {
	t.Helper()
	return kubeFixtureWith(t, ks, kube, sbomFor, []byte("coredns binary"))
}

// kubeFixtureWith is kubeFixtureOf with the coredns binary's bytes.
func kubeFixtureWith(t *testing.T, ks *sign.KeySet, kube, sbomFor, coredns []byte) (Source, []byte, []byte) {
	t.Helper()
	src := fixture(t, ks)
	probe := []byte("kubedos-probe binary")
	prov := fmt.Sprintf(`{"predicate":{"buildDefinition":{"resolvedDependencies":[`+
		`{"name":"kubedosd","digest":{"sha256":"aa"}},{"name":"kube","digest":{"sha256":%q}},{"name":"kubedos-probe","digest":{"sha256":%q}},`+
		`{"name":"coredns","digest":{"sha256":%q}}]}}}`,
		hexSum(kube), hexSum(probe), hexSum(coredns))
	sbom := fmt.Sprintf(`{"bomFormat":"CycloneDX","metadata":{"component":{"name":"kube","hashes":[{"alg":"SHA-256","content":%q}]}}}`, hexSum(sbomFor))
	dnsSBOM := fmt.Sprintf(`{"bomFormat":"CycloneDX","metadata":{"component":{"name":"coredns","hashes":[{"alg":"SHA-256","content":%q}]}}}`, hexSum(coredns))
	for name, data := range map[string]string{BinKube: string(kube), BinKubeSBOM: sbom, BinProbe: string(probe),
		BinCoreDNS: string(coredns), BinCoreDNSSBOM: dnsSBOM} {
		if err := os.WriteFile(filepath.Join(src.BinDir, name), []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m, _, err := manifest.Read(filepath.Join(src.BuildDir, manifest.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range m.Files {
		if f.Path == manifest.ProvenanceRel {
			m.Files[i].SHA256, m.Files[i].Size = hexSum([]byte(prov)), int64(len(prov))
		}
	}
	raw, sig := signedJSON(t, ks, m)
	for name, data := range map[string][]byte{manifest.ProvenanceRel: []byte(prov), manifest.ManifestFile: raw, manifest.SignatureFile: sig} {
		if err := os.WriteFile(filepath.Join(src.BuildDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return src, kube, probe
}

// TestKubeBinariesInBundle: a Kubernetes build's bundle carries the kube
// binary, its SBOM and the probe, as the build was made with them, and
// refuses to be made from other bytes.
func TestKubeBinariesInBundle(t *testing.T) {
	ks, _ := keys(t)
	ctx := context.Background()

	src, kube, probe := kubeFixture(t, ks, []byte("kube multicall binary"))
	out := filepath.Join(t.TempDir(), "b.tar")
	if _, err := Create(ctx, src, out); err != nil {
		t.Fatal(err)
	}
	got := members(t, out)
	if string(got["bin/kube"]) != string(kube) || string(got["bin/kubedos-probe"]) != string(probe) || !strings.Contains(string(got["bin/kube.cdx.json"]), hexSum(kube)) {
		t.Errorf("bundle members: kube %q, probe %q, sbom %q", got["bin/kube"], got["bin/kubedos-probe"], got["bin/kube.cdx.json"])
	}
	if string(got["bin/coredns"]) != "coredns binary" || !strings.Contains(string(got["bin/coredns.cdx.json"]), hexSum([]byte("coredns binary"))) {
		t.Errorf("bundle members: coredns %q, sbom %q", got["bin/coredns"], got["bin/coredns.cdx.json"])
	}
	dest := filepath.Join(t.TempDir(), "x")
	if _, err := Extract(ctx, out, dest, ks.SigningPub); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "bin", "kube")); err != nil || string(b) != string(kube) {
		t.Errorf("extracted bin/kube: %q, %v", b, err)
	}

	for _, tc := range []struct {
		name   string
		change func(src Source)
		want   string
	}{
		{"another kube binary", func(src Source) { write(t, filepath.Join(src.BinDir, BinKube), "a rebuilt kube") }, "the signed manifest of build b-1234 lists " + hexSum(kube)},
		{"another probe", func(src Source) { write(t, filepath.Join(src.BinDir, BinProbe), "another probe") }, "lists " + hexSum(probe)},
		{"no SBOM", func(src Source) { os.Remove(filepath.Join(src.BinDir, BinKubeSBOM)) }, "the kube binary's SBOM"},
		{"another coredns", func(src Source) { write(t, filepath.Join(src.BinDir, BinCoreDNS), "a rebuilt coredns") }, "lists " + hexSum([]byte("coredns binary"))},
		{"no coredns SBOM", func(src Source) { os.Remove(filepath.Join(src.BinDir, BinCoreDNSSBOM)) }, "carries CoreDNS: its SBOM"},
		{"coredns SBOM of another binary", func(src Source) {
			write(t, filepath.Join(src.BinDir, BinCoreDNSSBOM), `{"bomFormat":"CycloneDX","metadata":{"component":{"name":"coredns","hashes":[{"alg":"SHA-256","content":"00"}]}}}`)
		}, "the build's coredns is"},
		{"no kube", func(src Source) { os.Remove(filepath.Join(src.BinDir, BinKube)) }, "kube"},
		{"provenance changed", func(src Source) {
			write(t, filepath.Join(src.BuildDir, manifest.ProvenanceRel), `{"predicate":{}}`)
		}, "provenance.intoto.json: sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, _, _ := kubeFixture(t, ks, []byte("kube multicall binary"))
			tc.change(src)
			out := filepath.Join(t.TempDir(), "b.tar")
			if _, err := Create(ctx, src, out); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Create: %v, want an error containing %q", err, tc.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a refused bundle was written")
			}
		})
	}

	// An SBOM of another binary is refused: the rebuilt roles would not
	// have the same address.
	src, _, _ = kubeFixture(t, ks, []byte("some other kube"))
	if _, err := Create(ctx, src, filepath.Join(t.TempDir(), "b.tar")); err == nil || !strings.Contains(err.Error(), "describes a binary with sha256") {
		t.Errorf("an SBOM of another binary: %v", err)
	}
}

func write(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
