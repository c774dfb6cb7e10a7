package spec

import (
	"fmt"
	"net/netip"
	"regexp"
	"time"
)

// KubernetesVersion is the one release the role roots carry (kubeplan.Version
// without its "v"; kubeplan's tests keep the two equal). A spec's
// workloads.kubernetes.version is empty or this.
const KubernetesVersion = "1.35.4"

// Defaults and bounds of the Kubernetes certificates the hub issues
// (docs/kubernetes.md). Short lives are the revocation story: a revoked
// node's kubelet client certificate is refused by the apiserver at most
// KubeletClientCertificateLifetime after its last renewal.
const (
	DefaultClusterDomain                    = "cluster.local"
	DefaultKubeCertificateLifetime          = 24 * time.Hour
	DefaultKubeletClientCertificateLifetime = time.Hour
	MinKubeCertificateLifetime              = 10 * time.Minute
	MaxKubeCertificateLifetime              = 24 * time.Hour
	MaxKubeletClientCertificateLifetime     = time.Hour
)

var domainRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// KubeLifetimes are the lives of the hub-issued Kubernetes certificates.
type KubeLifetimes struct {
	// Default is every certificate's but the kubelet client's.
	Default, KubeletClient time.Duration
}

// Domain is the cluster DNS domain (default cluster.local).
func (k Kubernetes) Domain() string {
	if k.ClusterDomain == "" {
		return DefaultClusterDomain
	}
	return k.ClusterDomain
}

// Lifetimes parses the certificate lifetimes, applying defaults and bounds.
func (k Kubernetes) Lifetimes() (KubeLifetimes, error) {
	out := KubeLifetimes{Default: DefaultKubeCertificateLifetime, KubeletClient: DefaultKubeletClientCertificateLifetime}
	for _, f := range []struct {
		path, v string
		dst     *time.Duration
		max     time.Duration
	}{
		{"workloads.kubernetes.certificateLifetime", k.CertificateLifetime, &out.Default, MaxKubeCertificateLifetime},
		{"workloads.kubernetes.kubeletClientCertificateLifetime", k.KubeletClientCertificateLifetime, &out.KubeletClient, MaxKubeletClientCertificateLifetime},
	} {
		if f.v == "" {
			continue
		}
		d, err := time.ParseDuration(f.v)
		if err != nil {
			return KubeLifetimes{}, fmt.Errorf("%s: %q is not a duration such as 1h", f.path, f.v)
		}
		if d < MinKubeCertificateLifetime || d > f.max {
			return KubeLifetimes{}, fmt.Errorf("%s: %s is outside [%s, %s]", f.path, d, MinKubeCertificateLifetime, f.max)
		}
		*f.dst = d
	}
	return out, nil
}

// FirstServiceIP is the first address of the service CIDR: the ClusterIP of
// the `kubernetes` Service, which the apiserver's certificate must name.
func (k Kubernetes) FirstServiceIP() (netip.Addr, error) {
	p, err := netip.ParsePrefix(k.ServiceCIDR)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("workloads.kubernetes.serviceCIDR %q: %w", k.ServiceCIDR, err)
	}
	a := p.Masked().Addr().Next()
	if !p.Contains(a) {
		return netip.Addr{}, fmt.Errorf("workloads.kubernetes.serviceCIDR %q has no first address", k.ServiceCIDR)
	}
	return a, nil
}

func validateKubeIdentity(c *problems, k Kubernetes) {
	if d := k.ClusterDomain; d != "" && (len(d) > 253 || !domainRE.MatchString(d)) {
		c.add("workloads.kubernetes.clusterDomain", "must be a lower-case DNS domain such as cluster.local, got %q", d)
	}
	if _, err := k.Lifetimes(); err != nil {
		c.add("workloads.kubernetes", "%v", err)
	}
}
