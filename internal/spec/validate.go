package spec

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"time"
)

// Bounds on node resources: below them a Debian node does not boot usefully,
// above them the number is almost certainly a unit mistake.
const (
	MinCPUs, MaxCPUs           = 1, 256
	MinMemoryMiB, MaxMemoryMiB = 512, 4 << 20
	MinDiskGiB, MaxDiskGiB     = 4, 64 << 10
	MinVMID, MaxVMID           = 100, 999999999 // Proxmox's VMID range
)

var (
	// Debian policy §5.6.1: lower case letters, digits, + - . ; at least two characters.
	debPackageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	dnsLabelRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	sha256HexRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	suiteRE      = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	componentRE  = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

// Validate checks a (defaulted) spec and returns every problem it finds. It
// has no side effects: it reads no files and touches no network.
func Validate(s *ClusterSpec) Problems {
	var c problems
	if s.APIVersion != APIVersion {
		c.add("apiVersion", "must be %q, got %q", APIVersion, s.APIVersion)
	}
	if s.Kind != Kind {
		c.add("kind", "must be %q, got %q", Kind, s.Kind)
	}
	if !dnsLabelRE.MatchString(s.Metadata.Name) {
		c.add("metadata.name", "must be a DNS label (lower case letters, digits, '-'), got %q", s.Metadata.Name)
	}
	validateOS(&c, s)
	validateTrust(&c, s)
	lan := validateNetworking(&c, s)
	validateNodes(&c, s, lan)
	validateStorage(&c, s)
	validateWorkloads(&c, s, lan)
	validateTargets(&c, s)
	validateNodeConfig(&c, s)
	return c.list
}

func validateOS(c *problems, s *ClusterSpec) {
	o := s.OS
	if !suiteRE.MatchString(o.Suite) {
		c.add("os.suite", "must be a Debian suite or codename such as bookworm, got %q", o.Suite)
	}
	if u, err := url.Parse(o.Mirror); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		c.add("os.mirror", "must be an http(s) URL, got %q", o.Mirror)
	}
	for i, comp := range o.Components {
		if !componentRE.MatchString(comp) {
			c.add(fmt.Sprintf("os.components[%d]", i), "%q is not a valid archive component", comp)
		}
	}
	if !slices.Contains([]string{"amd64", "arm64"}, o.Architecture) {
		c.add("os.architecture", "must be amd64 or arm64, got %q", o.Architecture)
	}
	if !debPackageRE.MatchString("linux-image-" + o.KernelFlavour) {
		c.add("os.kernelFlavour", "%q does not make a valid package name linux-image-<flavour>", o.KernelFlavour)
	}
	checkPackages(c, "os.packages", o.Packages)
	for _, role := range sortedKeys(o.RolePackages) {
		path := "os.rolePackages." + string(role)
		if !slices.Contains(Roles, role) {
			c.add(path, "unknown role %q (roles: %v)", role, Roles)
		}
		checkPackages(c, path, o.RolePackages[role])
	}
}

func checkPackages(c *problems, path string, pkgs []string) {
	seen := map[string]bool{}
	for i, p := range pkgs {
		at := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case !debPackageRE.MatchString(p):
			c.add(at, "%q is not a valid Debian package name (lower case letters, digits, + - .)", p)
		case seen[p]:
			c.add(at, "package %q is listed twice", p)
		}
		seen[p] = true
	}
}

func validateTrust(c *problems, s *ClusterSpec) {
	t := s.Trust
	seen := map[int]bool{}
	for i, p := range t.PCRs {
		at := fmt.Sprintf("trust.pcrs[%d]", i)
		switch {
		case p < 0 || p > 23:
			c.add(at, "PCR index must be 0..23, got %d", p)
		case seen[p]:
			c.add(at, "PCR %d is listed twice", p)
		}
		seen[p] = true
	}
	if t.SecureBoot != nil && *t.SecureBoot && !seen[7] {
		c.add("trust.pcrs", "secureBoot is required, so PCR 7 (Secure Boot state and keys) must be in the policy")
	}
	if t.TPM != nil && !*t.TPM && t.SecureBoot != nil && *t.SecureBoot {
		// Attestation is what gates node existence; without a TPM there is nothing to attest.
		c.add("trust.tpm", "must be true: attestation-gated enrollment needs a TPM 2.0")
	}
	e := t.EKPolicy
	switch e.Mode {
	case EKRegistered:
	case EKCertificate:
		if e.CAFile == "" {
			c.add("trust.ekPolicy.caFile", "is required when mode is %q", EKCertificate)
		}
	case EKWindow:
		if d, err := time.ParseDuration(e.Window); err != nil || d <= 0 || d > 24*time.Hour {
			c.add("trust.ekPolicy.window", "must be a duration between 1s and 24h when mode is %q, got %q", EKWindow, e.Window)
		}
	default:
		c.add("trust.ekPolicy.mode", "must be one of %s, %s, %s, got %q", EKRegistered, EKCertificate, EKWindow, e.Mode)
	}
	validateRegisteredEKs(c, e.RegisteredEKs, s)
	if d, err := time.ParseDuration(t.CertificateLifetime); err != nil || d < 5*time.Minute || d > 30*24*time.Hour {
		c.add("trust.certificateLifetime", "must be a duration between 5m and 720h, got %q", t.CertificateLifetime)
	}
	if d, err := time.ParseDuration(t.RevocationMaxAge); err != nil || d < MinRevocationMaxAge || d > MaxRevocationMaxAge {
		c.add("trust.revocationMaxAge", "must be a duration between %s and %s, got %q", MinRevocationMaxAge, MaxRevocationMaxAge, t.RevocationMaxAge)
	}
}

// validateNetworking checks the LAN and planes and returns the LAN prefix
// (invalid when the LAN CIDR is bad, so later checks can skip).
func validateNetworking(c *problems, s *ClusterSpec) netip.Prefix {
	n := s.Networking
	lan, ok := parsePrefix(c, "networking.lan.cidr", n.LAN.CIDR)
	if ok {
		checkInside(c, "networking.lan.gateway", n.LAN.Gateway, lan)
	}
	type named struct {
		path string
		p    netip.Prefix
	}
	var nets []named
	if ok {
		nets = append(nets, named{"networking.lan.cidr", lan})
	}
	ports := map[int]Plane{}
	for _, name := range sortedKeys(n.Planes) {
		ps := n.Planes[name]
		path := "networking.planes." + string(name)
		if !slices.Contains(Planes, name) {
			c.add(path, "unknown plane %q (planes: %v)", name, Planes)
			continue
		}
		if p, ok := parsePrefix(c, path+".cidr", ps.CIDR); ok {
			nets = append(nets, named{path + ".cidr", p})
		}
		switch other, dup := ports[ps.Port]; {
		case ps.Port < 1 || ps.Port > 65535:
			c.add(path+".port", "must be 1..65535, got %d", ps.Port)
		case dup:
			c.add(path+".port", "port %d is already used by plane %s", ps.Port, other)
		}
		ports[ps.Port] = name
	}
	for _, name := range Planes {
		if _, ok := n.Planes[name]; !ok {
			c.add("networking.planes."+string(name), "plane %s must be declared (every node joins all three planes)", name)
		}
	}
	for i := range nets {
		for j := i + 1; j < len(nets); j++ {
			if nets[i].p.Overlaps(nets[j].p) {
				c.add(nets[j].path, "%s overlaps %s (%s): planes must be disjoint from each other and the LAN", nets[j].p, nets[i].path, nets[i].p)
			}
		}
	}
	return lan
}

func parsePrefix(c *problems, path, v string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		c.add(path, "must be a CIDR such as 10.0.0.0/24, got %q", v)
		return netip.Prefix{}, false
	}
	if p != p.Masked() {
		c.add(path, "%s has host bits set; did you mean %s?", p, p.Masked())
		return netip.Prefix{}, false
	}
	return p, true
}

// checkInside reports whether v is a usable host address inside p.
func checkInside(c *problems, path, v string, p netip.Prefix) (netip.Addr, bool) {
	a, err := netip.ParseAddr(v)
	if err != nil {
		c.add(path, "must be an IP address, got %q", v)
		return netip.Addr{}, false
	}
	if p.IsValid() && (!p.Contains(a) || isEdge(p, a)) {
		c.add(path, "%s is not a host address inside %s", a, p)
		return a, false
	}
	return a, true
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// validateRegisteredEKs: each EK is a hash, named for one node of the
// topology, and no EK or node is listed twice.
func validateRegisteredEKs(c *problems, eks []RegisteredEK, s *ClusterSpec) {
	eksSeen, nodesSeen := map[string]int{}, map[string]int{}
	for i, r := range eks {
		at := fmt.Sprintf("trust.ekPolicy.registeredEKs[%d]", i)
		if !sha256HexRE.MatchString(r.EK) {
			c.add(at+".ek", "must be a lower-case hex sha256 (64 characters), got %q", r.EK)
		} else if j, dup := eksSeen[r.EK]; dup {
			c.add(at+".ek", "EK is already registered by registeredEKs[%d]: one TPM is one node", j)
		} else {
			eksSeen[r.EK] = i
		}
		if _, ok := s.NodeByName(r.Node); !ok {
			c.add(at+".node", "must name a node of topology.nodes, got %q", r.Node)
		} else if j, dup := nodesSeen[r.Node]; dup {
			c.add(at+".node", "node %s already has an EK in registeredEKs[%d]", r.Node, j)
		} else {
			nodesSeen[r.Node] = i
		}
	}
}
