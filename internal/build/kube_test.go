package build

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/lock"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/spec"
)

func localK8s(t *testing.T) *spec.ClusterSpec {
	t.Helper()
	doc, err := spec.Parse(examples.LocalK8s)
	if err != nil {
		t.Fatal(err)
	}
	return spec.WithDefaults(doc.Spec)
}

func hexSHA(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// kubeFixture writes a fake kube binary, its SBOM, kubedos-probe and a
// fake coredns with its SBOM.
func kubeFixture(t *testing.T, kube []byte) Options {
	t.Helper()
	dir := t.TempDir()
	o := Options{Spec: localK8s(t), Kube: filepath.Join(dir, "kube"), Probe: filepath.Join(dir, "kubedos-probe"),
		CoreDNS: filepath.Join(dir, "coredns")}
	if err := os.WriteFile(o.Probe, []byte("probe binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeGoBinary(t, o.Kube, "kube", kube)
	writeGoBinary(t, o.CoreDNS, "coredns", []byte("coredns v1"))
	return o
}

// writeGoBinary writes a fake Go binary and its SBOM (one module, as
// goBuildInfo, and github.com/coredns/caddy for coredns).
func writeGoBinary(t *testing.T, path, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	bom := cdx.NewBOM()
	bom.Metadata = &cdx.Metadata{Component: &cdx.Component{Type: cdx.ComponentTypeApplication, Name: name,
		Hashes: &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: hexSHA(data)}}}}
	bi := goBuildInfo()
	if name == "coredns" {
		bi.Deps = append(bi.Deps, &debug.Module{Path: "github.com/coredns/caddy", Version: "v1.1.4", Sum: "h1:" + strings.Repeat("B", 43) + "="})
	}
	comps, err := GoComponents(bi)
	if err != nil {
		t.Fatal(err)
	}
	bom.Components = &comps
	if err := WriteSBOM(bom, path+".cdx.json"); err != nil {
		t.Fatal(err)
	}
}

func TestReadKubeInputs(t *testing.T) {
	o := kubeFixture(t, []byte("kube v1"))
	roles := lock.Roles(o.Spec)
	in, err := readKubeInputs(o, roles)
	if err != nil {
		t.Fatal(err)
	}
	if in.kubeSHA != hexSHA([]byte("kube v1")) || in.probeSHA != hexSHA([]byte("probe binary")) || in.sbom == nil ||
		in.corednsSHA != hexSHA([]byte("coredns v1")) || in.corednsSBOM == nil {
		t.Errorf("inputs %+v", in)
	}
	noCoreDNS := kubeFixture(t, []byte("kube v1"))
	noCoreDNS.CoreDNS = filepath.Join(t.TempDir(), "coredns")
	if _, err := readKubeInputs(noCoreDNS, roles); !errors.Is(err, ErrKubeInput) ||
		!strings.Contains(err.Error(), "--coredns") || !strings.Contains(err.Error(), "make coredns") {
		t.Errorf("missing coredns: %v", err)
	}
	// A rebuilt coredns beside an old SBOM.
	staleDNS := kubeFixture(t, []byte("kube v1"))
	if err := os.WriteFile(staleDNS.CoreDNS, []byte("coredns v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := readKubeInputs(staleDNS, roles); !errors.Is(err, ErrKubeInput) || !strings.Contains(err.Error(), "make coredns") {
		t.Errorf("stale coredns SBOM: %v", err)
	}

	missing := o
	missing.Kube = filepath.Join(t.TempDir(), "kube")
	if _, err := readKubeInputs(missing, roles); !errors.Is(err, ErrKubeInput) ||
		!strings.Contains(err.Error(), "--kube") || !strings.Contains(err.Error(), "make kube") {
		t.Errorf("missing kube: %v", err)
	}
	// A rebuilt binary beside an old SBOM.
	if err := os.WriteFile(o.Kube, []byte("kube v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := readKubeInputs(o, roles); !errors.Is(err, ErrKubeInput) || !strings.Contains(err.Error(), "describes a binary") {
		t.Errorf("stale SBOM: %v", err)
	}
	noProbe := kubeFixture(t, []byte("kube v1"))
	noProbe.Probe = filepath.Join(t.TempDir(), "kubedos-probe")
	if _, err := readKubeInputs(noProbe, roles); !errors.Is(err, ErrKubeInput) || !strings.Contains(err.Error(), "make build") {
		t.Errorf("missing probe: %v", err)
	}
	// Kubernetes disabled: nothing is read, nothing is needed.
	off := missing
	off.Spec = localK8s(t)
	off.Spec.Workloads.Kubernetes.Enabled = false
	off.Probe = noProbe.Probe
	if _, err := readKubeInputs(off, roles); err != nil {
		t.Errorf("Kubernetes disabled: %v", err)
	}
}

// A changed kube binary is a new worker and control plane, and the same
// master: the master carries no Kubernetes.
func TestRoleKeyKube(t *testing.T) {
	keys := func(kube string) map[spec.Role]string { return roleKeysWith(t, []byte(kube), nil) }
	a, b := keys("kube v1"), keys("kube v2")
	if a[spec.RoleMaster] != b[spec.RoleMaster] {
		t.Error("the master's address depends on the kube binary")
	}
	for _, r := range []spec.Role{spec.RoleControlPlane, spec.RoleWorker} {
		if a[r] == b[r] {
			t.Errorf("%s: a changed kube binary kept the address %s", r, a[r])
		}
	}
	if again := keys("kube v1"); again[spec.RoleWorker] != a[spec.RoleWorker] {
		t.Error("the worker's address is not a function of its inputs")
	}
	// A changed coredns is a new worker (it carries the image) and the
	// same control plane.
	dns := func(coredns string) map[spec.Role]string {
		return roleKeysWith(t, []byte("kube v1"), func(o *Options) { writeGoBinary(t, o.CoreDNS, "coredns", []byte(coredns)) })
	}
	c, d := dns("coredns v1"), dns("coredns v2")
	if c[spec.RoleWorker] == d[spec.RoleWorker] || c[spec.RoleControlPlane] != d[spec.RoleControlPlane] || c[spec.RoleMaster] != d[spec.RoleMaster] {
		t.Errorf("a changed coredns: worker %v, control plane %v, master %v changed",
			c[spec.RoleWorker] != d[spec.RoleWorker], c[spec.RoleControlPlane] != d[spec.RoleControlPlane], c[spec.RoleMaster] != d[spec.RoleMaster])
	}
}

func readTarNames(t *testing.T, path string) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name], _ = io.ReadAll(tr)
	}
}

func TestInstallKube(t *testing.T) {
	o := kubeFixture(t, []byte("kube v1"))
	newRoot := func(t *testing.T) string {
		root := t.TempDir()
		for p, data := range map[string]string{"usr/bin/catatonit": "static init", "lib/systemd/system/etcd.service": "[Unit]\n"} {
			if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
		if err := os.MkdirAll(wants, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, l := range []string{filepath.Join(wants, "etcd.service"), filepath.Join(root, "etc/systemd/system/etcd2.service")} {
			if err := os.Symlink("/lib/systemd/system/etcd.service", l); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	linkOf := func(root, p string) string {
		l, _ := os.Readlink(filepath.Join(root, p))
		return l
	}
	exists := func(root, p string) bool {
		_, err := os.Lstat(filepath.Join(root, p))
		return err == nil
	}

	t.Run("controlplane", func(t *testing.T) {
		root := newRoot(t)
		k := roleKube(o, spec.RoleControlPlane)
		if err := installKube(root, k, "amd64", 1700000000); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(root, "usr/bin/kube")); string(b) != "kube v1" {
			t.Errorf("usr/bin/kube is %q", b)
		}
		for _, n := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"} {
			if linkOf(root, "usr/bin/"+n) != "kube" {
				t.Errorf("usr/bin/%s → %q", n, linkOf(root, "usr/bin/"+n))
			}
		}
		for _, c := range []kubeplan.Component{kubeplan.Etcd, kubeplan.APIServer, kubeplan.ControllerManager, kubeplan.Scheduler} {
			b, err := os.ReadFile(filepath.Join(root, "etc/systemd/system", kubeplan.UnitName(c)))
			if err != nil || string(b) != kubeplan.Unit(c) {
				t.Errorf("%s unit: %v", c, err)
			}
		}
		if linkOf(root, "etc/systemd/system/etcd.service") != "/dev/null" || exists(root, "etc/systemd/system/multi-user.target.wants/etcd.service") ||
			exists(root, "etc/systemd/system/etcd2.service") {
			t.Error("Debian's etcd.service is not masked, or still enabled or aliased")
		}
		for _, p := range []string{"usr/bin/kubelet", "etc/containerd/config.toml", "usr/share/kubedos/images/pause.tar",
			"usr/share/kubedos/images/coredns.tar", "etc/modules-load.d/kubedos-kubernetes.conf"} {
			if exists(root, p) {
				t.Errorf("control plane has %s", p)
			}
		}
		// Nothing is enabled: kubedosd starts the units.
		wants, _ := filepath.Glob(filepath.Join(root, "etc/systemd/system/*.wants/kube*"))
		if len(wants) > 0 {
			t.Errorf("enabled: %v", wants)
		}
	})

	t.Run("worker", func(t *testing.T) {
		root := newRoot(t)
		k := roleKube(o, spec.RoleWorker)
		if err := installKube(root, k, "amd64", 1700000000); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"kubelet", "kube-proxy"} {
			if linkOf(root, "usr/bin/"+n) != "kube" {
				t.Errorf("usr/bin/%s → %q", n, linkOf(root, "usr/bin/"+n))
			}
		}
		if exists(root, "usr/bin/kubectl") || exists(root, "etc/systemd/system/kube-apiserver.service") || linkOf(root, "etc/systemd/system/etcd.service") != "" ||
			linkOf(root, "etc/systemd/system/etcd2.service") == "" {
			t.Error("worker has control-plane or etcd files")
		}
		if b, _ := os.ReadFile(filepath.Join(root, "etc/containerd/config.toml")); string(b) != kubeplan.ContainerdConfig() {
			t.Errorf("containerd config %q", b)
		}
		// Same-node Service replies pass netfilter (br_netfilter loaded,
		// its hook on).
		if b, _ := os.ReadFile(filepath.Join(root, "etc/modules-load.d/kubedos-kubernetes.conf")); !strings.Contains(string(b), "\nbr_netfilter\n") {
			t.Errorf("modules-load.d: %q", b)
		}
		if b, _ := os.ReadFile(filepath.Join(root, "etc/sysctl.d/90-kubedos-kubernetes.conf")); !strings.Contains(string(b), "\nnet.bridge.bridge-nf-call-iptables = 1\n") {
			t.Errorf("sysctl.d: %q", b)
		}
		for name, ref := range map[string]string{"pause": kubeplan.PauseImage, "probe": kubeplan.ProbeImage, "coredns": kubeplan.CoreDNSImage} {
			files := readTarNames(t, filepath.Join(root, kubeplan.ImageArchive(name)))
			if !strings.Contains(string(files["index.json"]), `"io.containerd.image.name":"`+ref+`"`) {
				t.Errorf("%s image index %s", name, files["index.json"])
			}
		}
		// CoreDNS's image: its binary at /coredns, run as a user, not root.
		var cfg []byte
		for n, b := range readTarNames(t, filepath.Join(root, kubeplan.ImageArchive("coredns"))) {
			if strings.HasPrefix(n, "blobs/sha256/") && bytes.Contains(b, []byte(`"Entrypoint"`)) {
				cfg = b
			}
		}
		if !bytes.Contains(cfg, []byte(`"User":"65532:65532"`)) || !bytes.Contains(cfg, []byte(`"Entrypoint":["/coredns"]`)) {
			t.Errorf("coredns image config %s", cfg)
		}
		// Same inputs, same image bytes.
		again := newRoot(t)
		if err := installKube(again, k, "amd64", 1700000000); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"pause", "probe", "coredns"} {
			a, _ := os.ReadFile(filepath.Join(root, kubeplan.ImageArchive(name)))
			b, _ := os.ReadFile(filepath.Join(again, kubeplan.ImageArchive(name)))
			if !bytes.Equal(a, b) {
				t.Errorf("%s image differs between two installs", name)
			}
		}
	})

	t.Run("loadbalancer", func(t *testing.T) {
		doc, err := spec.Parse(examples.Reference)
		if err != nil {
			t.Fatal(err)
		}
		ref := o
		ref.Spec = spec.WithDefaults(doc.Spec)
		root := newRoot(t)
		// Debian's packages enable their units.
		for _, u := range []string{"haproxy.service", "keepalived.service"} {
			if err := os.Symlink("/lib/systemd/system/"+u, filepath.Join(root, "etc/systemd/system/multi-user.target.wants", u)); err != nil {
				t.Fatal(err)
			}
		}
		k := roleKube(ref, spec.RoleLoadBalancer)
		if k == nil || k.Kube != "" || k.Probe != "" || k.CoreDNS != "" {
			t.Fatalf("loadbalancer root %+v: wants no kube, no probe", k)
		}
		if err := installKube(root, k, "amd64", 1700000000); err != nil {
			t.Fatal(err)
		}
		for _, c := range []kubeplan.Component{kubeplan.HAProxy, kubeplan.Keepalived} {
			b, err := os.ReadFile(filepath.Join(root, kubeplan.DropInFile(c)))
			if err != nil || string(b) != kubeplan.DropIn(c) {
				t.Errorf("%s drop-in: %q %v", c, b, err)
			}
			if exists(root, "etc/systemd/system/multi-user.target.wants/"+kubeplan.UnitName(c)) {
				t.Errorf("%s is still enabled: kubedosd starts it", c)
			}
			if exists(root, "etc/systemd/system/"+kubeplan.UnitName(c)) {
				t.Errorf("%s: a unit of ours shadows Debian's", c)
			}
		}
		if exists(root, "usr/bin/kube") || exists(root, "etc/containerd/config.toml") {
			t.Error("a load balancer carries Kubernetes binaries or containerd's configuration")
		}
	})

	t.Run("no catatonit", func(t *testing.T) {
		root := newRoot(t)
		if err := os.Remove(filepath.Join(root, "usr/bin/catatonit")); err != nil {
			t.Fatal(err)
		}
		if err := installKube(root, roleKube(o, spec.RoleWorker), "amd64", 1); err == nil || !strings.Contains(err.Error(), "catatonit") {
			t.Errorf("no catatonit: %v", err)
		}
	})
}

func TestKubeSBOM(t *testing.T) {
	o := kubeFixture(t, []byte("kube v1"))
	in, err := readKubeInputs(o, lock.Roles(o.Spec))
	if err != nil {
		t.Fatal(err)
	}
	l := &lock.Lock{Suite: "bookworm", Packages: []lock.Package{{Name: "runc", Version: "1.1", Architecture: "amd64", SHA256: strings.Repeat("a", 64)}}}
	bom, err := MakeSBOM([]Installed{{"runc", "1.1", "amd64"}}, l, "worker", "id")
	if err != nil {
		t.Fatal(err)
	}
	addKubeSBOM(bom, in.sbom, in.kubeSHA)
	addCoreDNSSBOM(bom, in.corednsSBOM, in.corednsSHA)
	path := filepath.Join(t.TempDir(), FileSBOM)
	if err := WriteSBOM(bom, path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadSBOM(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range *back.Components {
		names = append(names, c.Name)
	}
	if !slices.Contains(names, "runc") || !slices.Contains(names, "kube") || !slices.Contains(names, "golang.org/x/sys") || !slices.Contains(names, "stdlib") ||
		!slices.Contains(names, "coredns") || !slices.Contains(names, "github.com/coredns/caddy") {
		t.Errorf("components %v", names)
	}
	// A module both link is listed once (a BOM's refs are unique), and
	// both binaries depend on it.
	refs := map[string]int{}
	for _, c := range *back.Components {
		refs[c.BOMRef]++
	}
	for ref, n := range refs {
		if n > 1 {
			t.Errorf("%s listed %d times", ref, n)
		}
	}
	for _, d := range *back.Dependencies {
		if (d.Ref == "kubedos:kube@"+kubeplan.Version || d.Ref == "kubedos:coredns@"+kubeplan.CoreDNSVersion) && (d.Dependencies == nil || len(*d.Dependencies) < 2) {
			t.Errorf("%s depends on %v", d.Ref, d.Dependencies)
		}
	}
	if probs := checkSBOM(path, l); len(probs) != 0 {
		t.Errorf("verify refuses the merged SBOM: %v", probs)
	}
	// A module without its go.sum hash, or a kube without a digest, is not pinned.
	comps := *back.Components
	for i := range comps {
		switch comps[i].Name {
		case "golang.org/x/sys":
			comps[i].Properties = nil
		case "kube":
			comps[i].Hashes = nil
		}
	}
	if err := WriteSBOM(back, path); err != nil {
		t.Fatal(err)
	}
	if probs := checkSBOM(path, l); len(probs) != 2 {
		t.Errorf("unpinned components: %v", probs)
	}
}

func TestKubeProvenance(t *testing.T) {
	o := kubeFixture(t, []byte("kube v1"))
	roles := lock.Roles(o.Spec)
	in, err := readKubeInputs(o, roles)
	if err != nil {
		t.Fatal(err)
	}
	deps := kubeDeps(o, roles, in)
	if len(deps) != 3 || deps[0].Name != "kube" || deps[0].Digest["sha256"] != hexSHA([]byte("kube v1")) ||
		deps[0].URI != "pkg:golang/k8s.io/kubernetes@"+kubeplan.Version || deps[1].Name != "kubedos-probe" ||
		deps[2].Name != "coredns" || deps[2].URI != "pkg:golang/github.com/coredns/coredns@"+kubeplan.CoreDNSVersion ||
		deps[2].Digest["sha256"] != hexSHA([]byte("coredns v1")) {
		t.Errorf("deps %+v", deps)
	}
	prov, err := provenanceFor(&manifest.Manifest{}, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(prov), hexSHA([]byte("kube v1"))) {
		t.Error("provenance lacks the kube digest")
	}
	o.Spec.Workloads.Kubernetes.Enabled = false
	if deps := kubeDeps(o, roles, in); len(deps) != 0 {
		t.Errorf("Kubernetes disabled, deps %+v", deps)
	}
}

// goBuildInfo is what a small Go binary carries: one module, with its hash.
func goBuildInfo() *debug.BuildInfo {
	return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "kubedos.test/kube"},
		Deps: []*debug.Module{{Path: "golang.org/x/sys", Version: "v0.30.0", Sum: "h1:" + strings.Repeat("A", 43) + "="}}}
}
