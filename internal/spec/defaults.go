package spec

import "encoding/json"

// Defaults a spec may leave out. They are documented in `kubedos spec init`.
const (
	DefaultSuite               = "trixie"
	DefaultMirror              = "http://deb.debian.org/debian"
	DefaultArchitecture        = "amd64"
	DefaultKernelFlavour       = "cloud-amd64"
	DefaultCertificateLifetime = "24h"
	DefaultRevocationMaxAge    = "10m"
	DefaultCPUs                = 2
	DefaultMemoryMiB           = 2048
	DefaultDiskGiB             = 16
	DefaultFilesystem          = "ext4"
	DefaultPodCIDR             = "10.244.0.0/16"
	DefaultServiceCIDR         = "10.96.0.0/12"
)

// DefaultPCRs are the PCRs the build predicts from the artifact itself.
var DefaultPCRs = []int{4, 7, 11}

// DefaultPlanePorts are the WireGuard listen ports of the planes.
var DefaultPlanePorts = map[Plane]int{PlaneControl: 51820, PlaneObservability: 51821, PlaneKubernetes: 51822}

// WithDefaults returns a copy of s with every omitted field set to its
// default. s itself is not changed.
func WithDefaults(s *ClusterSpec) *ClusterSpec {
	out := deepCopy(s)
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&out.OS.Suite, DefaultSuite)
	def(&out.OS.Mirror, DefaultMirror)
	def(&out.OS.Architecture, DefaultArchitecture)
	def(&out.OS.KernelFlavour, DefaultKernelFlavour)
	if len(out.OS.Components) == 0 {
		out.OS.Components = []string{"main"}
	}
	if out.Trust.SecureBoot == nil {
		out.Trust.SecureBoot = ptr(true)
	}
	if out.Trust.TPM == nil {
		out.Trust.TPM = ptr(true)
	}
	if out.Trust.PCRs == nil {
		out.Trust.PCRs = append([]int(nil), DefaultPCRs...)
	}
	def(&out.Trust.EKPolicy.Mode, EKRegistered)
	def(&out.Trust.CertificateLifetime, DefaultCertificateLifetime)
	def(&out.Trust.RevocationMaxAge, DefaultRevocationMaxAge)
	for i := range out.Topology.Nodes {
		n := &out.Topology.Nodes[i]
		if n.CPUs == 0 {
			n.CPUs = DefaultCPUs
		}
		if n.MemoryMiB == 0 {
			n.MemoryMiB = DefaultMemoryMiB
		}
		if n.DiskGiB == 0 {
			n.DiskGiB = DefaultDiskGiB
		}
	}
	for name, p := range out.Networking.Planes {
		if p.Port == 0 {
			p.Port = DefaultPlanePorts[name]
			out.Networking.Planes[name] = p
		}
	}
	def(&out.Storage.Data.Filesystem, DefaultFilesystem)
	if k := &out.Workloads.Kubernetes; k.Enabled {
		def(&k.PodCIDR, DefaultPodCIDR)
		def(&k.ServiceCIDR, DefaultServiceCIDR)
	}
	def(&out.Targets.Default, TargetQEMU)
	return out
}

func ptr[T any](v T) *T { return &v }

// deepCopy goes through JSON: every field is tagged and the spec is small,
// so this is simpler and safer than a hand-written copy of each slice and map.
func deepCopy(s *ClusterSpec) *ClusterSpec {
	b, err := json.Marshal(s)
	if err != nil {
		panic("spec: marshal for copy: " + err.Error()) // only plain data types: cannot fail
	}
	out := &ClusterSpec{}
	if err := json.Unmarshal(b, out); err != nil {
		panic("spec: unmarshal for copy: " + err.Error())
	}
	return out
}
