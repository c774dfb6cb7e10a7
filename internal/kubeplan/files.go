package kubeplan

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
)

// File is one file the kubernetes controller writes under Dir.
type File struct {
	Path string
	Data []byte
	Mode uint32
}

// EnvFile is the environment file a component's unit reads its flags from
// (ARGS=…): the unit is baked into the image, the flags are the node's.
func EnvFile(c Component) string { return path.Join(Dir, string(c)+".env") }

// Leader election of the controller-manager and the scheduler: four times
// Kubernetes' defaults (15 s, 10 s, 2 s). At the defaults the leaders of
// three control planes under emulation missed their 10 s renewals and
// stepped down about once a minute (the seventh HA drill run); each new
// leader syncs its caches again, and the probe's pods were never created.
// A dead leader is replaced within about a minute instead of 15 s.
const (
	leaseDuration = "--leader-elect-lease-duration=60s"
	renewDeadline = "--leader-elect-renew-deadline=40s"
	retryPeriod   = "--leader-elect-retry-period=8s"
)

// APIServerShutdownArg bounds kube-apiserver's stop: by default its HTTP
// server waits up to the request timeout (60 s) for connections that
// carry open watches, and every kubelet, controller and CoreDNS holds
// some, so each stop (a reboot, an etcd restore) took a minute more than
// its work. With it the server answers new requests 429 with Retry-After
// (haproxy's clients retry, and /readyz is red at once), drains the
// requests in flight, and closes its connections 2 s after: 66 s -> 2 s
// with a watch open (bench/apiserver-stop.sh, docs/benchmarks.md).
const APIServerShutdownArg = "--shutdown-send-retry-after=true"

// Kubeconfig is the kubeconfig a component reaches the API server with.
func Kubeconfig(c Component) string { return path.Join(Dir, string(c)+".kubeconfig") }

func pki(name string) string { return path.Join(PKIDir, name) }

// certOf is the certificate (pki.KubeCert name) a component's kubeconfig
// presents.
var certOf = map[Component]string{
	ControllerManager: "controller-manager",
	Scheduler:         "scheduler",
	Kubelet:           "kubelet-client",
	Proxy:             "kube-proxy",
}

// Files is everything the controller writes for p on host h: an
// environment file per component that runs from a unit of ours,
// kubeconfigs, the kubelet's and kube-proxy's configuration, the CNI
// network, and haproxy's and keepalived's configuration. Paths are
// absolute; the same plan and host give the same bytes.
func Files(p *Plan, h Host) ([]File, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var out []File
	add := func(path string, data []byte) { out = append(out, File{Path: path, Data: data, Mode: 0o644}) }
	for _, c := range p.Components {
		if debianUnit(c) {
			continue
		}
		args := Args(p, c)
		add(EnvFile(c), []byte("# written by kubedosd from the hub's plan; do not edit\nARGS=\""+strings.Join(args, " ")+"\"\n"))
		if cert, ok := certOf[c]; ok {
			add(Kubeconfig(c), kubeconfig(p.APIServer, pki("ca.crt"), pki(cert+".crt"), pki(cert+".key"), string(c)))
		}
	}
	if slices.Contains(p.Components, Kubelet) {
		b, err := kubeletConfig(p)
		if err != nil {
			return nil, err
		}
		add(path.Join(Dir, "kubelet.yaml"), b)
		add(path.Join(CNIDir, "10-kubedos.conflist"), cniConfig(p))
	}
	if slices.Contains(p.Components, Proxy) {
		add(path.Join(Dir, "kube-proxy.yaml"), proxyConfig(p))
	}
	if p.LB != nil {
		if !ifnameRE.MatchString(h.LANInterface) {
			return nil, fmt.Errorf("kubernetes plan: the LAN interface %q is not an interface name", clip(h.LANInterface))
		}
		if slices.Contains(p.Components, HAProxy) {
			add(HAProxyConfig, haproxyConfig(p))
		}
		add(KeepalivedConfig, keepalivedConfig(p, h))
	}
	return out, nil
}

// Args is a component's command line after its name. Every value is from
// the plan (validated) or a constant: no spaces, no quotes.
func Args(p *Plan, c Component) []string {
	switch c {
	case Etcd:
		var initial []string
		for _, m := range p.EtcdMembers {
			initial = append(initial, m.Name+"="+m.PeerURL)
		}
		state := EtcdStateNew
		if p.EtcdJoin != nil {
			state, initial = EtcdStateExisting, nil
			for _, m := range p.EtcdJoin.Members {
				initial = append(initial, m.Name+"="+m.PeerURL)
			}
		}
		self := "https://" + hostPort(p.EtcdAddress, EtcdPeerPort)
		client := "https://" + hostPort(p.EtcdAddress, EtcdClientPort)
		args := []string{"--name=" + p.Node, "--data-dir=" + EtcdDataDir,
			"--listen-client-urls=" + client + ",https://127.0.0.1:2379", "--advertise-client-urls=" + client,
			"--listen-peer-urls=" + self, "--initial-advertise-peer-urls=" + self,
			"--initial-cluster=" + strings.Join(initial, ","), "--initial-cluster-state=" + state,
			"--initial-cluster-token=" + p.Cluster,
			"--client-cert-auth", "--trusted-ca-file=" + pki("etcd-ca.crt"),
			"--cert-file=" + pki("etcd-server.crt"), "--key-file=" + pki("etcd-server.key"),
			"--peer-client-cert-auth", "--peer-trusted-ca-file=" + pki("etcd-ca.crt"),
			"--peer-cert-file=" + pki("etcd-peer.crt"), "--peer-key-file=" + pki("etcd-peer.key"),
			"--snapshot-count=10000", "--quota-backend-bytes=1073741824",
			fmt.Sprintf("--listen-metrics-urls=http://0.0.0.0:%d", EtcdMetricsPort)}
		return append(args, etcdRaftArgs()...)
	case APIServer:
		return []string{"--advertise-address=" + p.NodeIP, "--bind-address=0.0.0.0", fmt.Sprintf("--secure-port=%d", APIServerPort),
			"--etcd-servers=" + strings.Join(p.EtcdServers, ","), "--etcd-cafile=" + pki("etcd-ca.crt"),
			"--etcd-certfile=" + pki("apiserver-etcd-client.crt"), "--etcd-keyfile=" + pki("apiserver-etcd-client.key"),
			"--client-ca-file=" + pki("ca.crt"),
			"--tls-cert-file=" + pki("apiserver.crt"), "--tls-private-key-file=" + pki("apiserver.key"),
			"--kubelet-client-certificate=" + pki("apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + pki("apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority=" + pki("ca.crt"), "--kubelet-preferred-address-types=InternalIP",
			"--service-account-issuer=https://kubernetes.default.svc." + p.ClusterDomain,
			"--service-account-key-file=" + pki("sa.pub"), "--service-account-signing-key-file=" + pki("sa.key"),
			"--service-cluster-ip-range=" + p.ServiceCIDR,
			"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
			"--requestheader-client-ca-file=" + pki("front-proxy-ca.crt"),
			"--proxy-client-cert-file=" + pki("front-proxy-client.crt"), "--proxy-client-key-file=" + pki("front-proxy-client.key"),
			"--requestheader-allowed-names=front-proxy-client", "--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--requestheader-group-headers=X-Remote-Group", "--requestheader-username-headers=X-Remote-User",
			"--allow-privileged=false", "--profiling=false", "--endpoint-reconciler-type=lease",
			APIServerShutdownArg}
	case ControllerManager:
		kc := Kubeconfig(c)
		return []string{"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			"--bind-address=127.0.0.1", "--leader-elect=true", leaseDuration, renewDeadline, retryPeriod,
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + pki("sa.key"), "--root-ca-file=" + pki("ca.crt"),
			"--cluster-cidr=" + p.ClusterCIDR, "--service-cluster-ip-range=" + p.ServiceCIDR,
			"--allocate-node-cidrs=false", "--profiling=false",
			// No CSR signing or approving: every certificate comes from the hub.
			"--controllers=*,-csrsigning,-csrapproving,-csrcleaner,-bootstrapsigner,-tokencleaner"}
	case Scheduler:
		kc := Kubeconfig(c)
		return []string{"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			"--bind-address=127.0.0.1", "--leader-elect=true", leaseDuration, renewDeadline, retryPeriod, "--profiling=false"}
	case Kubelet:
		return []string{"--config=" + path.Join(Dir, "kubelet.yaml"), "--kubeconfig=" + Kubeconfig(c),
			"--hostname-override=" + p.Node, "--node-ip=" + p.NodeIP, "--root-dir=" + KubeletRoot}
	case Proxy:
		return []string{"--config=" + path.Join(Dir, "kube-proxy.yaml"), "--hostname-override=" + p.Node}
	}
	return nil
}

func hostPort(ip string, port int) string {
	if strings.Contains(ip, ":") {
		return fmt.Sprintf("[%s]:%d", ip, port)
	}
	return fmt.Sprintf("%s:%d", ip, port)
}

// kubeconfig is JSON (YAML's subset): nothing to quote by hand.
func kubeconfig(server, ca, cert, key, user string) []byte {
	doc := map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": "kubedos",
		"clusters": []any{map[string]any{"name": "kubedos", "cluster": map[string]any{"server": server, "certificate-authority": ca}}},
		"users":    []any{map[string]any{"name": user, "user": map[string]any{"client-certificate": cert, "client-key": key}}},
		"contexts": []any{map[string]any{"name": "kubedos", "context": map[string]any{"cluster": "kubedos", "user": user}}},
	}
	return mustJSON(doc)
}

func kubeletConfig(p *Plan) ([]byte, error) {
	doc := map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false}, "webhook": map[string]any{"enabled": true},
			"x509": map[string]any{"clientCAFile": pki("ca.crt")}},
		"authorization":            map[string]any{"mode": "Webhook"},
		"cgroupDriver":             "systemd",
		"clusterDNS":               []string{p.ClusterDNS},
		"clusterDomain":            p.ClusterDomain,
		"containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
		"tlsCertFile":              pki("kubelet-serving.crt"),
		"tlsPrivateKeyFile":        pki("kubelet-serving.key"),
		// The hub renews both certificates; the kubelet requests none.
		"rotateCertificates": false, "serverTLSBootstrap": false,
		"failSwapOn": false, "staticPodPath": "", "readOnlyPort": 0,
		// Pods resolve through the cluster DNS; the image has no resolver
		// of its own to pass on.
		"resolvConf": "",
		// Small disks: the state partition holds /var/lib/kubelet, the data
		// partition containerd's images, which are all baked in and never
		// collected away.
		"evictionHard":                map[string]string{"memory.available": "50Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
		"imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
		"podCIDR": p.NodePodCIDR,
	}
	return mustJSON(doc), nil
}

func proxyConfig(p *Plan) []byte {
	doc := map[string]any{
		"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
		"clientConnection":   map[string]any{"kubeconfig": Kubeconfig(Proxy)},
		"mode":               "nftables",
		"clusterCIDR":        p.ClusterCIDR,
		"bindAddress":        p.NodeIP,
		"metricsBindAddress": hostPort(p.NodeIP, 10249),
		// The image's kernel defaults stand; kube-proxy sets no conntrack sysctl.
		"conntrack": map[string]any{"maxPerCore": 0, "min": 0},
	}
	return mustJSON(doc)
}

// PodBridge is the bridge a kubelet node's pods are on; the node's
// firewall trusts it like a plane.
const PodBridge = "cni0"

// cniConfig: Debian's bridge and host-local plugins, the node's /24,
// no masquerade (pod addresses are routed over wg-kubernetes as they are).
func cniConfig(p *Plan) []byte {
	doc := map[string]any{
		"cniVersion": "0.4.0", "name": "kubedos",
		"plugins": []any{
			map[string]any{"type": "bridge", "bridge": PodBridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{"type": "host-local", "ranges": []any{[]any{map[string]any{"subnet": p.NodePodCIDR}}},
					"routes": []any{map[string]any{"dst": "0.0.0.0/0"}}}},
			map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}},
		},
	}
	return mustJSON(doc)
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic("kubeplan: " + err.Error()) // plain maps and strings: cannot fail
	}
	return append(b, '\n')
}

// Inputs are the files under Dir a component reads: its environment file,
// configuration, kubeconfig and every key and certificate those name. The
// controller restarts a running component when one of them changes, and
// does not start it while one of the certificates is missing.
func Inputs(p *Plan, c Component) []string {
	switch c {
	case HAProxy:
		return []string{HAProxyConfig, pki("ca.crt")}
	case Keepalived:
		return []string{KeepalivedConfig}
	}
	seen := map[string]bool{EnvFile(c): true}
	for _, a := range Args(p, c) {
		_, v, ok := strings.Cut(a, "=")
		if !ok {
			continue
		}
		for _, f := range strings.Split(v, ",") {
			if strings.HasPrefix(f, Dir+"/") {
				seen[f] = true
			}
		}
	}
	if cert, ok := certOf[c]; ok {
		seen[pki(cert+".crt")], seen[pki(cert+".key")], seen[pki("ca.crt")] = true, true, true
	}
	if c == Kubelet {
		seen[pki("kubelet-serving.crt")], seen[pki("kubelet-serving.key")] = true, true
		seen[path.Join(CNIDir, "10-kubedos.conflist")] = true
	}
	out := make([]string, 0, len(seen))
	for f := range seen {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// etcdRaftArgs is etcd's election timing. Five times etcd's default
// heartbeat and election timeout: members on slow or emulated hardware
// (edge boxes, VMs without KVM) missed 100 ms heartbeats and re-elected
// without end (the first HA drill run); a lost leader is noticed in 5 s
// rather than 1 s. Pre-vote (etcd 3.5's default, off in bookworm's 3.4):
// a member cut off from the leader, or booting too slowly to hear it,
// asks first whether it could win and raises no term; without it, its
// higher term makes the working leader step down when it comes back, an
// election in which writes fail (TestEtcdRejoinKeepsLeader).
func etcdRaftArgs() []string {
	return []string{fmt.Sprintf("--heartbeat-interval=%d", EtcdHeartbeatMS), fmt.Sprintf("--election-timeout=%d", EtcdElectionMS),
		"--pre-vote=true"}
}
