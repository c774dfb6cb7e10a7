package lock

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/kubedos/kubedos/internal/kubeplan"
	"github.com/kubedos/kubedos/internal/spec"
)

// NodePackages is the kubedos node base installed on every role on top of
// the suite's Priority: required set. It is deliberately small: the image
// is immutable and managed over the API, so no SSH server and no shell
// conveniences. The kernel is added per spec by KernelPackage.
var NodePackages = []string{
	"ca-certificates",  // kubedosd talks TLS to the hub and registries
	"e2fsprogs",        // mkfs/fsck of the state and data partitions
	"iproute2",         // addresses and routes of the LAN and the planes
	"kmod",             // modprobe for wireguard, nf_tables, storage drivers
	"nftables",         // the baseline firewall that trusts only the planes
	"systemd",          // PID 1 and the units kubedosd runs under
	"systemd-sysv",     // /sbin/init pointing at systemd
	"systemd-boot-efi", // the UKI stub and boot manager, signed at build time
	// The kernel package needs an initramfs tool; ours is kubedos-init in the
	// UKI, so take the smallest one rather than initramfs-tools.
	"tiny-initramfs",
	// systemd-pcrphase needs the TPM2 software stack to extend PCR 11 with
	// the boot phases the attestation policy predicts.
	"libtss2-esys-3.0.2-0",
	"libtss2-rc0",
	"udev",            // device nodes and by-partuuid links
	"wireguard-tools", // wg(8) for debugging the three planes
}

// suiteNames are NodePackages' names in suites that renamed them: trixie's
// 64-bit time_t transition gave the TPM2 libraries a t64 suffix.
var suiteNames = map[string]map[string]string{
	"trixie": {"libtss2-esys-3.0.2-0": "libtss2-esys-3.0.2-0t64", "libtss2-rc0": "libtss2-rc0t64"},
}

// NodePackagesFor is NodePackages as suite names them.
func NodePackagesFor(suite string) []string {
	out := slices.Clone(NodePackages)
	for i, p := range out {
		if n, ok := suiteNames[suite][p]; ok {
			out[i] = n
		}
	}
	return out
}

// KernelPackage is the kernel metapackage of a flavour (cloud-amd64 → linux-image-cloud-amd64).
func KernelPackage(flavour string) string { return "linux-image-" + flavour }

// PrometheusPackages are what the prometheus role runs when the spec has
// Prometheus (workloads.observability.prometheus): Debian's Prometheus,
// which ships promtool and the console templates, and Alertmanager, which
// the generated configuration sends alerts to on 127.0.0.1 (kubedosd's
// observability controller starts both; internal/observability says how).
var PrometheusPackages = []string{"prometheus", "prometheus-alertmanager"}

// observabilityPackages is what lock.Requests adds for role for
// observability.
func observabilityPackages(s *spec.ClusterSpec, role spec.Role) []string {
	if role == spec.RolePrometheus && s.Workloads.Observability.Prometheus {
		return PrometheusPackages
	}
	return nil
}

// Requests returns the packages the spec asks for on a role, sorted: the
// kernel, NodePackages, os.packages, os.rolePackages[role] and, when
// Kubernetes is enabled, what the role's components need
// (kubeplan.RolePackages), and the prometheus role's PrometheusPackages
// when the spec has Prometheus. The suite's required set is not included: it
// comes from the archive, not the spec.
func Requests(s *spec.ClusterSpec, role spec.Role) []string {
	s = spec.WithDefaults(s)
	return sortedSet(BaseRequests(s), s.OS.RolePackages[role], kubeplan.RolePackages(s, role), observabilityPackages(s, role))
}

// BaseRequests returns the packages the spec asks for on every role, sorted:
// the kernel, NodePackages and os.packages. It depends on nothing
// role-specific, so a base root made of it can be shared by all roles
// without one role's change reaching the others.
func BaseRequests(s *spec.ClusterSpec) []string {
	s = spec.WithDefaults(s)
	return sortedSet([]string{KernelPackage(s.OS.KernelFlavour)}, NodePackagesFor(s.OS.Suite), s.OS.Packages)
}

func sortedSet(lists ...[]string) []string {
	set := map[string]bool{}
	for _, list := range lists {
		for _, p := range list {
			set[p] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Roles returns the roles that have at least one node, in spec.Roles order.
func Roles(s *spec.ClusterSpec) []spec.Role {
	var out []spec.Role
	for _, r := range spec.Roles {
		if s.CountRole(r) > 0 {
			out = append(out, r)
		}
	}
	return out
}

// RequestDigest is the digest recorded in a lock: it covers everything the
// resolution depended on that came from the spec or from kubedos itself.
func RequestDigest(s *spec.ClusterSpec) string {
	s = spec.WithDefaults(s)
	doc := struct {
		Suite        string                 `json:"suite"`
		Mirror       string                 `json:"mirror"`
		Components   []string               `json:"components"`
		Architecture string                 `json:"architecture"`
		Roles        map[spec.Role][]string `json:"roles"`
	}{s.OS.Suite, normalMirror(s.OS.Mirror), s.OS.Components, s.OS.Architecture, map[spec.Role][]string{}}
	for _, r := range Roles(s) {
		doc.Roles[r] = Requests(s, r)
	}
	b, err := json.Marshal(doc) // map keys are sorted by encoding/json
	if err != nil {
		panic("lock: marshal request digest: " + err.Error()) // plain strings: cannot fail
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// checkSource validates the parts of a spec that end up in an APT sources
// line and on apt-get's command line, where a stray space or a leading '-'
// would change what apt does.
func checkSource(s *spec.ClusterSpec) error {
	var errs []error
	if !suiteRE.MatchString(s.OS.Suite) {
		errs = append(errs, fmt.Errorf("os.suite %q is not a Debian suite name", s.OS.Suite))
	}
	if err := checkMirror(s.OS.Mirror); err != nil {
		errs = append(errs, fmt.Errorf("os.mirror: %w", err))
	}
	for _, c := range s.OS.Components {
		if !compRE.MatchString(c) {
			errs = append(errs, fmt.Errorf("os.components: %q is not an archive component", c))
		}
	}
	if !archRE.MatchString(s.OS.Architecture) {
		errs = append(errs, fmt.Errorf("os.architecture %q is not a Debian architecture", s.OS.Architecture))
	}
	for _, r := range Roles(s) {
		for _, p := range Requests(s, r) {
			if !nameRE.MatchString(p) {
				errs = append(errs, fmt.Errorf("role %s: %q is not a Debian package name", r, p))
			}
		}
	}
	if len(Roles(s)) == 0 {
		errs = append(errs, errors.New("topology.nodes: no nodes, so no role to resolve"))
	}
	return errors.Join(errs...)
}

func checkMirror(m string) error {
	u, err := url.Parse(m)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file" {
		return fmt.Errorf("%q must be an http, https or file URL", m)
	}
	if strings.ContainsAny(m, " \t\n[]") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q has characters an APT sources line cannot carry", m)
	}
	return nil
}

// normalMirror drops a trailing slash so http://x/debian and http://x/debian/ are one mirror.
func normalMirror(m string) string { return strings.TrimRight(m, "/") }
