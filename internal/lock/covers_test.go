package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/spec"
)

// coveredLock is a lock whose roles hold exactly what s requests.
func coveredLock(s *spec.ClusterSpec) *Lock {
	d := spec.WithDefaults(s)
	l := &Lock{APIVersion: APIVersion, Kind: Kind, Suite: d.OS.Suite, Mirror: d.OS.Mirror, Components: d.OS.Components,
		Architecture: d.OS.Architecture, SourceDateEpoch: 1, RequestDigest: RequestDigest(s), Roles: map[spec.Role][]string{}}
	seen := map[string]bool{}
	for _, r := range Roles(d) {
		for _, n := range Requests(d, r) {
			l.Roles[r] = append(l.Roles[r], n)
			if !seen[n] {
				seen[n] = true
				l.Packages = append(l.Packages, Package{Name: n, Version: "1", Architecture: "amd64",
					SHA256: strings.Repeat("0", 64), Size: 1, Filename: "pool/main/" + n + ".deb", Priority: "optional"})
			}
		}
	}
	slices.SortFunc(l.Packages, func(a, b Package) int { return strings.Compare(a.Name, b.Name) })
	return l
}

func coversSpec() *spec.ClusterSpec {
	return &spec.ClusterSpec{
		OS: spec.OS{Packages: []string{"htop"}, RolePackages: map[spec.Role][]string{spec.RoleEtcd: {"etcd-server"}}},
		Topology: spec.Topology{Nodes: []spec.Node{
			{Name: "w1", Role: spec.RoleWorker}, {Name: "e1", Role: spec.RoleEtcd},
		}},
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		name string
		edit func(*spec.ClusterSpec)
		want []string // substrings of the error; none means covered
	}{
		{"same spec", func(*spec.ClusterSpec) {}, nil},
		{"a package removed is still covered", func(s *spec.ClusterSpec) { s.OS.Packages = nil }, nil},
		{"a role without nodes is ignored", func(s *spec.ClusterSpec) {
			s.OS.RolePackages[spec.RoleStorage] = []string{"zfsutils-linux"}
		}, nil},
		{"new base and role packages", func(s *spec.ClusterSpec) {
			s.OS.Packages = append(s.OS.Packages, "jq")
			s.OS.RolePackages[spec.RoleEtcd] = append(s.OS.RolePackages[spec.RoleEtcd], "etcd-client")
		}, []string{"role etcd: not locked: etcd-client, jq", "role worker: not locked: jq"}},
		{"kernel flavour changed", func(s *spec.ClusterSpec) { s.OS.KernelFlavour = "rt-amd64" }, []string{"linux-image-rt-amd64"}},
		{"new role", func(s *spec.ClusterSpec) {
			s.Topology.Nodes = append(s.Topology.Nodes, spec.Node{Name: "lb1", Role: spec.RoleLoadBalancer})
		}, []string{"role loadbalancer is not in the lock"}},
		{"suite, mirror and architecture changed", func(s *spec.ClusterSpec) {
			s.OS.Suite, s.OS.Mirror, s.OS.Architecture = "forky", "http://mirror.example/debian", "arm64"
		}, []string{fmt.Sprintf(`suite is %q in the lock but "forky"`, spec.DefaultSuite), "mirror is", "architecture is"}},
		{"trailing slash on the mirror is the same mirror", func(s *spec.ClusterSpec) { s.OS.Mirror = spec.DefaultMirror + "/" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := coveredLock(coversSpec())
			s := coversSpec()
			tt.edit(s)
			err := l.Covers(s)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Covers = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrNotCovered) {
				t.Fatalf("Covers = %v, want ErrNotCovered", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Covers = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestUpdatePolicyOffline(t *testing.T) {
	// An apt-get that cannot run proves no resolution was attempted.
	noApt := ResolveOptions{AptGet: filepath.Join(t.TempDir(), "no-apt-get"), Keyring: "/dev/null"}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	if err := coveredLock(coversSpec()).Write(path); err != nil {
		t.Fatal(err)
	}
	l, changed, err := Update(ctx, coversSpec(), path, false, noApt)
	if err != nil || changed || l == nil {
		t.Fatalf("Update(covered) = %v, %v, %v; want the lock unchanged", l, changed, err)
	}

	s := coversSpec()
	s.OS.Packages = append(s.OS.Packages, "jq")
	_, changed, err = Update(ctx, s, path, false, noApt)
	if !errors.Is(err, ErrNotCovered) || changed || !strings.Contains(err.Error(), "--update") ||
		!strings.Contains(err.Error(), "jq") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Update(uncovered) = %v; want ErrNotCovered naming %s, jq and --update", err, path)
	}

	if err := os.WriteFile(path, []byte(`{"apiVersion": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Update(ctx, coversSpec(), path, true, noApt); !errors.Is(err, ErrInvalid) {
		t.Errorf("Update(corrupt lock, --update) = %v; want ErrInvalid, not a silent overwrite", err)
	}
	if after, _ := os.ReadFile(path); string(after) != `{"apiVersion": 1}` {
		t.Errorf("Update replaced a corrupt lock instead of leaving it for the operator")
	}
}

func TestRequests(t *testing.T) {
	s := coversSpec()
	got := Requests(s, spec.RoleEtcd)
	want := slices.Sorted(slices.Values(append(NodePackagesFor(spec.DefaultSuite), "etcd-server", "htop", "linux-image-cloud-amd64")))
	if !slices.Equal(got, want) {
		t.Errorf("Requests(etcd) = %v\nwant %v", got, want)
	}
	if slices.Contains(NodePackages, "openssh-server") {
		t.Error("NodePackages must not include an SSH server: nodes are API-managed")
	}
	if RequestDigest(s) != RequestDigest(coversSpec()) {
		t.Error("RequestDigest is not a function of the spec")
	}
	s.OS.Packages = append(s.OS.Packages, "jq")
	if RequestDigest(s) == RequestDigest(coversSpec()) {
		t.Error("RequestDigest ignores a new package")
	}
}

// The prometheus role gets Prometheus and Alertmanager when the spec has
// Prometheus, and only then; no other role does.
func TestRequestsPrometheus(t *testing.T) {
	s := coversSpec()
	s.Topology.Nodes = append(s.Topology.Nodes, spec.Node{Name: "mon", Role: spec.RolePrometheus})
	off := Requests(s, spec.RolePrometheus)
	before := RequestDigest(s)
	s.Workloads.Observability.Prometheus = true
	if RequestDigest(s) == before {
		t.Error("RequestDigest ignores Prometheus")
	}
	on := Requests(s, spec.RolePrometheus)
	for _, p := range PrometheusPackages {
		if slices.Contains(off, p) || !slices.Contains(on, p) {
			t.Errorf("%s: with Prometheus off %v, on %v", p, off, on)
		}
		if slices.Contains(Requests(s, spec.RoleWorker), p) {
			t.Errorf("a worker gets %s", p)
		}
	}
}

// Kubernetes roles get their components' packages (kubeplan's table), in
// the request digest too, so enabling Kubernetes is a lock update.
func TestRequestsKubernetes(t *testing.T) {
	s := coversSpec()
	s.Topology.Nodes = append(s.Topology.Nodes, spec.Node{Name: "cp1", Role: spec.RoleControlPlane})
	before := RequestDigest(s)
	off := Requests(s, spec.RoleWorker)
	s.Workloads.Kubernetes.Enabled = true
	if RequestDigest(s) == before {
		t.Error("RequestDigest ignores Kubernetes")
	}
	for _, tt := range []struct {
		role      spec.Role
		want, not []string
	}{
		{spec.RoleWorker, []string{"containerd", "runc", "containernetworking-plugins", "catatonit", "nftables"}, []string{"etcd-server"}},
		{spec.RoleEtcd, []string{"etcd-server"}, []string{"containerd"}},
		// etcd nodes exist: the control plane does not stack it.
		{spec.RoleControlPlane, nil, []string{"etcd-server", "containerd"}},
		// The API load balancer, whether or not os.rolePackages names it.
		{spec.RoleLoadBalancer, []string{"haproxy", "keepalived"}, []string{"containerd", "etcd-server"}},
	} {
		got := Requests(s, tt.role)
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Errorf("%s: %v is not sorted and unique", tt.role, got)
		}
		for _, p := range tt.want {
			if !slices.Contains(got, p) {
				t.Errorf("%s: %v lacks %s", tt.role, got, p)
			}
		}
		for _, p := range tt.not {
			if slices.Contains(got, p) && !slices.Contains(s.OS.RolePackages[tt.role], p) {
				t.Errorf("%s: %v has %s", tt.role, got, p)
			}
		}
	}
	if slices.Contains(off, "containerd") {
		t.Errorf("Kubernetes disabled, worker requests %v", off)
	}
}

// Trixie renamed the TPM2 libraries (64-bit time_t); bookworm keeps the
// old names and nothing else changes.
func TestNodePackagesFor(t *testing.T) {
	tri := NodePackagesFor("trixie")
	if !slices.Contains(tri, "libtss2-esys-3.0.2-0t64") || slices.Contains(tri, "libtss2-esys-3.0.2-0") || !slices.Contains(tri, "libtss2-rc0t64") {
		t.Errorf("trixie: %v", tri)
	}
	if got := NodePackagesFor("bookworm"); !slices.Equal(got, NodePackages) {
		t.Errorf("bookworm: %v", got)
	}
	if len(tri) != len(NodePackages) {
		t.Errorf("trixie has %d packages, bookworm %d", len(tri), len(NodePackages))
	}
}

// The base every role is derived from holds what all roles request and
// nothing role-specific: a role's own packages must not reach the others'
// roots through it.
func TestBaseRequests(t *testing.T) {
	s := coversSpec()
	s.Topology.Nodes = append(s.Topology.Nodes, spec.Node{Name: "mon", Role: spec.RolePrometheus}, spec.Node{Name: "w1", Role: spec.RoleWorker})
	s.Workloads.Kubernetes.Enabled = true
	s.Workloads.Observability.Prometheus = true
	base := BaseRequests(s)
	if !slices.IsSorted(base) || !slices.Contains(base, "linux-image-cloud-amd64") || !slices.Contains(base, "systemd") {
		t.Errorf("BaseRequests = %v: want the kernel and NodePackages, sorted", base)
	}
	for _, r := range Roles(s) {
		req := Requests(s, r)
		for _, p := range base {
			if !slices.Contains(req, p) {
				t.Errorf("%s requests %v, which lacks base package %s", r, req, p)
			}
		}
	}
	for _, p := range []string{"etcd-server", "containerd", "prometheus"} {
		if slices.Contains(base, p) {
			t.Errorf("base has the role package %s", p)
		}
	}
	before := BaseRequests(s)
	s.OS.RolePackages = map[spec.Role][]string{spec.RoleWorker: {"jq"}}
	if !slices.Equal(BaseRequests(s), before) {
		t.Error("a role's own package changed the base")
	}
	s.OS.Packages = append(s.OS.Packages, "jq")
	if !slices.Contains(BaseRequests(s), "jq") {
		t.Error("os.packages is not in the base")
	}
}
