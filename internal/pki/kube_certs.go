package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/kubedos/kubedos/internal/spec"
)

// KubeCert names one Kubernetes certificate a node may hold.
type KubeCert string

// The Kubernetes certificates, named after kubeadm's files. Which CA signs
// each, its subject, SANs and EKUs are in kubeTemplate; who gets each is in
// kubeRoleCerts.
const (
	KubeletClient          KubeCert = "kubelet-client"           // Kubernetes CA; CN system:node:<name>, O system:nodes; client
	KubeletServing         KubeCert = "kubelet-serving"          // Kubernetes CA; CN system:node:<name>; the node's names and IPs; server
	APIServer              KubeCert = "apiserver"                // Kubernetes CA; CN kube-apiserver; service names, first service IP, VIP, LBs, node; server
	APIServerKubeletClient KubeCert = "apiserver-kubelet-client" // Kubernetes CA; CN kube-apiserver-kubelet-client; client
	APIServerEtcdClient    KubeCert = "apiserver-etcd-client"    // etcd CA; CN kube-apiserver-etcd-client; client
	ControllerManager      KubeCert = "controller-manager"       // Kubernetes CA; CN system:kube-controller-manager; client
	Scheduler              KubeCert = "scheduler"                // Kubernetes CA; CN system:kube-scheduler; client
	FrontProxyClient       KubeCert = "front-proxy-client"       // front-proxy CA; CN front-proxy-client; client
	EtcdServer             KubeCert = "etcd-server"              // etcd CA; CN <name>; node names and IPs, localhost; server+client
	EtcdPeer               KubeCert = "etcd-peer"                // etcd CA; CN <name>; node names and IPs; server+client
	KubeProxy              KubeCert = "kube-proxy"               // Kubernetes CA; CN system:kube-proxy; client
)

// kubeRoleCerts is the role → certificate table: the one place that says
// which node role may hold which Kubernetes certificate. A role not listed
// holds none. A controlplane node also runs etcd (stacked) when the spec
// has no etcd nodes: see KubeCertsFor.
var kubeRoleCerts = map[spec.Role][]KubeCert{
	spec.RoleWorker: {KubeletClient, KubeletServing, KubeProxy},
	spec.RoleControlPlane: {APIServer, APIServerKubeletClient, APIServerEtcdClient, ControllerManager, Scheduler,
		FrontProxyClient},
	spec.RoleEtcd: {EtcdServer, EtcdPeer},
}

// KubeCertsFor is the certificates a node of role holds in the cluster s.
func KubeCertsFor(s *spec.ClusterSpec, role spec.Role) []KubeCert {
	out := slices.Clone(kubeRoleCerts[role])
	if role == spec.RoleControlPlane && s.CountRole(spec.RoleEtcd) == 0 {
		out = append(out, EtcdServer, EtcdPeer)
	}
	return out
}

// Group names Kubernetes gives meaning to.
const (
	GroupNodes      = "system:nodes"
	NodeUserPrefix  = "system:node:"
	UserControllers = "system:kube-controller-manager"
	UserScheduler   = "system:kube-scheduler"
	// UserProxy is the user Kubernetes' default RBAC binds to the
	// ClusterRole system:node-proxier (ClusterRoleBinding
	// system:node-proxier): what kube-proxy needs and no more.
	UserProxy = "system:kube-proxy"
)

// KubeIssue is one request to certify a node's key for a Kubernetes
// certificate.
type KubeIssue struct {
	Spec *spec.ClusterSpec
	Node spec.Node // the spec's record of the node, never the requester's claims
	Kind KubeCert
	CSR  []byte // PKCS #10 DER: only its public key is used
	Life spec.KubeLifetimes
	Now  time.Time
}

// Sign certifies the CSR's key for req.Kind. Everything in the certificate
// but the key comes from the spec: subject, SANs and EKUs are set here and
// whatever names the CSR asks for are ignored (a CSR claiming system:masters
// or another node gets this node's identity or nothing). The node's role
// must hold Kind (KubeCertsFor). The caller has checked the node is
// enrolled, attested and not revoked.
func (k *KubeCAs) Sign(req KubeIssue) (*x509.Certificate, error) {
	if req.Spec == nil {
		return nil, fmt.Errorf("%w: no cluster spec", ErrInvalid)
	}
	if !req.Spec.Workloads.Kubernetes.Enabled {
		return nil, fmt.Errorf("%w: Kubernetes is not enabled in the spec", ErrInvalid)
	}
	if !slices.Contains(KubeCertsFor(req.Spec, req.Node.Role), req.Kind) {
		return nil, fmt.Errorf("%w: node %s (role %s) may not hold a %s certificate", ErrKubeRole, req.Node.Name, req.Node.Role, req.Kind)
	}
	csr, err := parseCSR(req.CSR, fmt.Sprintf("node %s %s", req.Node.Name, req.Kind))
	if err != nil {
		return nil, err
	}
	ca, tmpl, life, err := k.template(req)
	if err != nil {
		return nil, err
	}
	return ca.issue(tmpl, csr.PublicKey, life, req.Now)
}

// template is the certificate of req.Kind for req.Node: its CA, content
// and life.
func (k *KubeCAs) template(req KubeIssue) (*CA, *x509.Certificate, time.Duration, error) {
	n, s := req.Node, req.Spec
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	t := &x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}
	ca, life := k.Kubernetes, req.Life.Default
	ips, err := nodeIPs(s, n)
	if err != nil {
		return nil, nil, 0, err
	}
	switch req.Kind {
	case KubeletClient:
		t.Subject = pkix.Name{CommonName: NodeUserPrefix + n.Name, Organization: []string{GroupNodes}}
		t.ExtKeyUsage, life = client, req.Life.KubeletClient
	case KubeletServing:
		t.Subject = pkix.Name{CommonName: NodeUserPrefix + n.Name, Organization: []string{GroupNodes}}
		t.ExtKeyUsage, t.DNSNames, t.IPAddresses = server, []string{n.Name}, ips
	case APIServer:
		t.Subject = pkix.Name{CommonName: "kube-apiserver"}
		t.ExtKeyUsage = server
		if t.DNSNames, t.IPAddresses, err = apiServerNames(s, n, ips); err != nil {
			return nil, nil, 0, err
		}
	case APIServerKubeletClient:
		t.Subject = pkix.Name{CommonName: "kube-apiserver-kubelet-client"}
		t.ExtKeyUsage = client
	case APIServerEtcdClient:
		t.Subject = pkix.Name{CommonName: "kube-apiserver-etcd-client"}
		t.ExtKeyUsage, ca = client, k.Etcd
	case ControllerManager:
		t.Subject = pkix.Name{CommonName: UserControllers}
		t.ExtKeyUsage = client
	case Scheduler:
		t.Subject = pkix.Name{CommonName: UserScheduler}
		t.ExtKeyUsage = client
	case KubeProxy:
		t.Subject = pkix.Name{CommonName: UserProxy}
		t.ExtKeyUsage = client
	case FrontProxyClient:
		t.Subject = pkix.Name{CommonName: "front-proxy-client"}
		t.ExtKeyUsage, ca = client, k.FrontProxy
	case EtcdServer:
		t.Subject = pkix.Name{CommonName: n.Name}
		t.ExtKeyUsage, ca = both, k.Etcd
		t.DNSNames = []string{n.Name, "localhost"}
		t.IPAddresses = append(ips, net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback)
	case EtcdPeer:
		t.Subject = pkix.Name{CommonName: n.Name}
		t.ExtKeyUsage, ca = both, k.Etcd
		t.DNSNames, t.IPAddresses = []string{n.Name}, ips
	default:
		return nil, nil, 0, fmt.Errorf("%w: unknown Kubernetes certificate %q", ErrInvalid, req.Kind)
	}
	if ca == nil {
		return nil, nil, 0, fmt.Errorf("%w: no CA for %s", ErrBadCA, req.Kind)
	}
	return ca, t, life, nil
}

// nodeIPs are the node's LAN address and its kubernetes-plane address.
func nodeIPs(s *spec.ClusterSpec, n spec.Node) ([]net.IP, error) {
	var out []net.IP
	lan := net.ParseIP(n.Address)
	if lan == nil {
		return nil, fmt.Errorf("%w: node %s address %q is not an IP address", ErrInvalid, n.Name, n.Address)
	}
	out = append(out, lan)
	if _, ok := s.Networking.Planes[spec.PlaneKubernetes]; ok {
		a, err := s.PlaneAddress(n, spec.PlaneKubernetes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		out = append(out, net.IP(a.AsSlice()))
	}
	return out, nil
}

// apiServerNames are what clients reach the apiserver by: the in-cluster
// service names and first service IP, the VIP and the load balancers, the
// node itself and loopback.
func apiServerNames(s *spec.ClusterSpec, n spec.Node, nodeIPs []net.IP) ([]string, []net.IP, error) {
	k := s.Workloads.Kubernetes
	svc, err := k.FirstServiceIP()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	dns := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + k.Domain(), n.Name, "localhost"}
	ips := []net.IP{net.IP(svc.AsSlice())}
	if v := net.ParseIP(s.Topology.APIVIP); v != nil {
		ips = append(ips, v)
	}
	for _, lb := range s.Topology.Nodes {
		if lb.Role == spec.RoleLoadBalancer {
			if a := net.ParseIP(lb.Address); a != nil {
				ips = append(ips, a)
			}
		}
	}
	ips = append(append(ips, nodeIPs...), net.IPv4(127, 0, 0, 1).To4())
	return dns, ips, nil
}
