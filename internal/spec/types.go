// Package spec defines the ClusterSpec: the one declarative file a whole
// kubedos cluster is manufactured from. It decodes strictly (unknown fields
// are errors) and validates without side effects, reporting every problem.
package spec

// APIVersion and Kind identify a ClusterSpec document.
const (
	APIVersion = "kubedos.io/v1alpha1"
	Kind       = "ClusterSpec"
)

// Role is what a node does in the platform.
type Role string

// The roles of the reference platform (seed 004).
const (
	RoleMaster       Role = "master"
	RolePrometheus   Role = "prometheus"
	RoleGrafana      Role = "grafana"
	RoleStorage      Role = "storage"
	RoleEtcd         Role = "etcd"
	RoleControlPlane Role = "controlplane"
	RoleWorker       Role = "worker"
	RoleLoadBalancer Role = "loadbalancer"
)

// Roles lists every role in a stable order, used for output and validation.
var Roles = []Role{
	RoleMaster, RolePrometheus, RoleGrafana, RoleStorage,
	RoleEtcd, RoleControlPlane, RoleWorker, RoleLoadBalancer,
}

// Plane names one of the three WireGuard backplanes.
type Plane string

// The three planes every node joins from first boot.
const (
	PlaneControl       Plane = "control"
	PlaneObservability Plane = "observability"
	PlaneKubernetes    Plane = "kubernetes"
)

// Planes lists the planes in a stable order.
var Planes = []Plane{PlaneControl, PlaneObservability, PlaneKubernetes}

// ClusterSpec is the root document.
type ClusterSpec struct {
	APIVersion  string      `yaml:"apiVersion" json:"apiVersion"`
	Kind        string      `yaml:"kind" json:"kind"`
	Metadata    Metadata    `yaml:"metadata" json:"metadata"`
	OS          OS          `yaml:"os" json:"os"`
	Trust       Trust       `yaml:"trust" json:"trust"`
	Topology    Topology    `yaml:"topology" json:"topology"`
	Networking  Networking  `yaml:"networking" json:"networking"`
	Storage     Storage     `yaml:"storage" json:"storage"`
	Workloads   Workloads   `yaml:"workloads" json:"workloads"`
	Targets     Targets     `yaml:"targets" json:"targets"`
	Destructive Destructive `yaml:"destructive" json:"destructive"`
	// NodeConfig is the node configuration convergence keeps on every node
	// of a role (kubedos converge); a role not named here is left alone.
	NodeConfig map[Role]RoleNodeConfig `yaml:"nodeConfig" json:"nodeConfig,omitempty"`
}

// Metadata names the cluster.
type Metadata struct {
	Name string `yaml:"name" json:"name"`
}

// OS is the Debian base every role image is composed from.
type OS struct {
	Suite         string   `yaml:"suite" json:"suite"`
	Mirror        string   `yaml:"mirror" json:"mirror"`
	Components    []string `yaml:"components" json:"components"`
	Architecture  string   `yaml:"architecture" json:"architecture"`
	KernelFlavour string   `yaml:"kernelFlavour" json:"kernelFlavour"`
	// Packages are installed on every role, on top of the base.
	Packages []string `yaml:"packages" json:"packages"`
	// RolePackages are installed only on nodes of that role.
	RolePackages map[Role][]string `yaml:"rolePackages" json:"rolePackages"`
}

// Trust is the policy a node must satisfy before it may exist.
type Trust struct {
	SecureBoot *bool `yaml:"secureBoot" json:"secureBoot"`
	TPM        *bool `yaml:"tpm" json:"tpm"`
	// PCRs are the PCR indexes the attestation policy compares.
	PCRs                []int    `yaml:"pcrs" json:"pcrs"`
	EKPolicy            EKPolicy `yaml:"ekPolicy" json:"ekPolicy"`
	CertificateLifetime string   `yaml:"certificateLifetime" json:"certificateLifetime"`
	// RevocationMaxAge bounds how old a node's copy of the hub's revocation
	// list may be before its API refuses admin and operator calls and its
	// health turns critical (revocation fails closed).
	RevocationMaxAge string `yaml:"revocationMaxAge" json:"revocationMaxAge,omitempty"`
}

// EK policy modes: which endorsement keys the hub accepts.
const (
	EKRegistered  = "registered"
	EKCertificate = "certificate"
	EKWindow      = "window"
)

// EKPolicy decides which TPMs may enroll.
type EKPolicy struct {
	Mode string `yaml:"mode" json:"mode"`
	// RegisteredEKs are the TPMs admitted, each for one node name (the
	// deploy step registers more at the hub).
	RegisteredEKs []RegisteredEK `yaml:"registeredEKs" json:"registeredEKs"`
	// CAFile is a PEM bundle that EK certificates must chain to.
	CAFile string `yaml:"caFile" json:"caFile"`
	// Window is how long an operator-opened enrollment window stays open.
	Window string `yaml:"window" json:"window"`
}

// RegisteredEK admits one TPM as one node: the EK under any other name is
// refused.
type RegisteredEK struct {
	// Node is the node name (in topology.nodes) the TPM may enroll as.
	Node string `yaml:"node" json:"node"`
	// EK is the sha256 (hex) of the TPM's EK public key (PKIX DER).
	EK string `yaml:"ek" json:"ek"`
}

// Topology is the set of nodes.
type Topology struct {
	// APIVIP is the Kubernetes API virtual IP on the LAN, held by the load
	// balancers, or by the control-plane nodes when there are none
	// (APIVIPHolders).
	APIVIP string `yaml:"apiVIP" json:"apiVIP,omitempty"`
	Nodes  []Node `yaml:"nodes" json:"nodes"`
}

// Node is one machine of the cluster.
type Node struct {
	Name          string `yaml:"name" json:"name"`
	Role          Role   `yaml:"role" json:"role"`
	VMID          int    `yaml:"vmid" json:"vmid"`
	Address       string `yaml:"address" json:"address"`
	CPUs          int    `yaml:"cpus" json:"cpus"`
	MemoryMiB     int    `yaml:"memoryMiB" json:"memoryMiB"`
	DiskGiB       int    `yaml:"diskGiB" json:"diskGiB"`
	FailureDomain string `yaml:"failureDomain" json:"failureDomain,omitempty"`
	// PlaneAddresses override the derived per-plane addresses.
	PlaneAddresses map[Plane]string `yaml:"planeAddresses" json:"planeAddresses,omitempty"`
}

// Networking is the LAN and the three backplanes.
type Networking struct {
	LAN    LAN                 `yaml:"lan" json:"lan"`
	Planes map[Plane]PlaneSpec `yaml:"planes" json:"planes"`
}

// LAN is the underlay the nodes share.
type LAN struct {
	CIDR    string `yaml:"cidr" json:"cidr"`
	Gateway string `yaml:"gateway" json:"gateway"`
}

// PlaneSpec is one WireGuard backplane.
type PlaneSpec struct {
	CIDR string `yaml:"cidr" json:"cidr"`
	Port int    `yaml:"port" json:"port"`
}

// Storage declares the data partition and opt-in storage systems.
type Storage struct {
	Data DataStorage `yaml:"data" json:"data"`
	ZFS  ZFS         `yaml:"zfs" json:"zfs"`
	Ceph Ceph        `yaml:"ceph" json:"ceph"`
}

// DataStorage is the node's `data` partition.
type DataStorage struct {
	Filesystem string `yaml:"filesystem" json:"filesystem"`
}

// ZFS is opt-in because Debian ships it in contrib.
type ZFS struct {
	Enabled bool      `yaml:"enabled" json:"enabled"`
	Pools   []ZFSPool `yaml:"pools" json:"pools,omitempty"`
}

// ZFSPool is one pool on a set of nodes.
type ZFSPool struct {
	Name   string   `yaml:"name" json:"name"`
	Nodes  []string `yaml:"nodes" json:"nodes"`
	Layout string   `yaml:"layout" json:"layout"`
}

// Ceph is optional; when on, failure domains and its plane are explicit.
type Ceph struct {
	Enabled bool     `yaml:"enabled" json:"enabled"`
	Plane   Plane    `yaml:"plane" json:"plane,omitempty"`
	Nodes   []string `yaml:"nodes" json:"nodes,omitempty"`
}

// Workloads are what the platform runs to prove itself.
type Workloads struct {
	Kubernetes    Kubernetes    `yaml:"kubernetes" json:"kubernetes"`
	Observability Observability `yaml:"observability" json:"observability"`
}

// Kubernetes is the reference workload.
type Kubernetes struct {
	Enabled     bool   `yaml:"enabled" json:"enabled"`
	Version     string `yaml:"version" json:"version,omitempty"`
	PodCIDR     string `yaml:"podCIDR" json:"podCIDR,omitempty"`
	ServiceCIDR string `yaml:"serviceCIDR" json:"serviceCIDR,omitempty"`
	// ClusterDomain, CertificateLifetime and KubeletClientCertificateLifetime
	// shape the certificates the hub issues (kubernetes.go has defaults and bounds).
	ClusterDomain                    string `yaml:"clusterDomain" json:"clusterDomain,omitempty"`
	CertificateLifetime              string `yaml:"certificateLifetime" json:"certificateLifetime,omitempty"`
	KubeletClientCertificateLifetime string `yaml:"kubeletClientCertificateLifetime" json:"kubeletClientCertificateLifetime,omitempty"`
}

// Observability is the built-in metrics stack (docs/observability.md).
// Grafana keeps its name for "dashboards on the grafana node": Grafana
// itself is not used (see the docs for what serves them).
type Observability struct {
	Prometheus bool `yaml:"prometheus" json:"prometheus"`
	Grafana    bool `yaml:"grafana" json:"grafana"`
	// Retention bounds Prometheus's time series database on the prometheus
	// node's data partition (observability.go has defaults and bounds).
	Retention *Retention `yaml:"retention" json:"retention,omitempty"`
	// ScrapeInterval is how often every target is scraped, a Go duration
	// in whole seconds (default 15s).
	ScrapeInterval string `yaml:"scrapeInterval" json:"scrapeInterval,omitempty"`
}

// Retention: samples older than Time, or beyond Size on disk, are dropped,
// whichever comes first.
type Retention struct {
	// Time is a Go duration such as 360h (default 15 days).
	Time string `yaml:"time" json:"time,omitempty"`
	// SizeGiB caps the database (default: half the node's disk).
	SizeGiB int `yaml:"sizeGiB" json:"sizeGiB,omitempty"`
}

// Target names.
const (
	TargetQEMU    = "qemu"
	TargetProxmox = "proxmox"
	TargetISO     = "iso"
)

// Targets are where the cluster can be deployed.
type Targets struct {
	Default string   `yaml:"default" json:"default"`
	QEMU    QEMU     `yaml:"qemu" json:"qemu"`
	Proxmox *Proxmox `yaml:"proxmox" json:"proxmox,omitempty"`
	ISO     *ISO     `yaml:"iso" json:"iso,omitempty"`
}

// QEMU is the local target.
type QEMU struct {
	// StateDir keeps per-node swtpm state, disks and console logs.
	StateDir string `yaml:"stateDir" json:"stateDir,omitempty"`
}

// Proxmox is a Proxmox VE API endpoint.
type Proxmox struct {
	APIURL string `yaml:"apiURL" json:"apiURL"`
	Node   string `yaml:"node" json:"node"`
	// Storage holds the VMs' disks, EFI vars and TPM state (local-lvm).
	Storage string `yaml:"storage" json:"storage"`
	// ImportStorage is a file-based storage with the "import" content
	// type, where images are uploaded before VMs are made from them
	// (default "local").
	ImportStorage string `yaml:"importStorage" json:"importStorage,omitempty"`
	Bridge        string `yaml:"bridge" json:"bridge"`
	// TokenFile holds the API token (USER@REALM!TOKENID=SECRET); the token
	// never goes into the spec.
	TokenFile string `yaml:"tokenFile" json:"tokenFile,omitempty"`
	// Fingerprint pins the API's TLS certificate by its SHA-256 (hex, colons
	// allowed, as Proxmox VE shows it); empty trusts the system's CAs.
	Fingerprint string `yaml:"fingerprint" json:"fingerprint,omitempty"`
}

// ISO is bare-metal install media.
type ISO struct {
	OutputDir string `yaml:"outputDir" json:"outputDir,omitempty"`
}

// Destructive actions are off unless explicitly enabled.
type Destructive struct {
	RecreateVMs bool `yaml:"recreateVMs" json:"recreateVMs"`
	WipeDisks   bool `yaml:"wipeDisks" json:"wipeDisks"`
	// DestroyVMs lets cluster down on proxmox destroy the VMs (disks, EFI
	// variables, TPM state: the nodes' identities) instead of stopping them.
	DestroyVMs bool `yaml:"destroyVMs" json:"destroyVMs"`
	// RemoveEtcdMembers lets convergence remove a member etcd lists that
	// the spec no longer has (its data is gone from the cluster for good),
	// and only while enough of the others stay healthy for their quorum.
	RemoveEtcdMembers bool `yaml:"removeEtcdMembers" json:"removeEtcdMembers"`
}

// RoleNodeConfig is what kubedosd's NodeConfig document holds for a role's
// nodes: the node refuses kernel parameters off its allow-list.
type RoleNodeConfig struct {
	// Sysctls are kernel parameters by dotted name, values as /proc/sys takes them.
	Sysctls map[string]string `yaml:"sysctls" json:"sysctls,omitempty"`
}
