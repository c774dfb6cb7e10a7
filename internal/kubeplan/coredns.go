package kubeplan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/kubedos/kubedos/internal/spec"
)

// The cluster DNS: CoreDNS built from the coredns/ module with only the
// plugins its Corefile uses (coredns/cmd/coredns), baked into kubelet roles
// as an OCI archive, run as a Deployment behind the kube-dns Service at
// the plan's ClusterDNS address.
const (
	// CoreDNSVersion is the coredns/ module's pin
	// (TestCoreDNSVersionMatchesModule).
	CoreDNSVersion = "v1.14.7"
	CoreDNSImage   = "kubedos.local/coredns:1.14.7"
	// CoreDNS is the binary's name, in its image and in kubedos's bin/.
	CoreDNS = "coredns"
	// CoreDNSNamespace and CoreDNSName: where kubeadm puts it, so tools
	// that look for kube-system/coredns and the kube-dns Service find it.
	CoreDNSNamespace = "kube-system"
	CoreDNSName      = "coredns"
	CoreDNSService   = "kube-dns"
	// CoreDNSReplicas: two, so a node or pod lost leaves a resolver.
	CoreDNSReplicas = 2
	// CoreDNSUser: not root. It listens on an unprivileged port
	// (CoreDNSPort; the Service maps 53 to it), so it needs no capability.
	CoreDNSUser = 65532
	CoreDNSPort = 1053
	// The health (liveness) and ready (readiness) plugins' ports.
	CoreDNSHealthPort = 8080
	CoreDNSReadyPort  = 8181
	// CoreDNSConfDir is where the ConfigMap's Corefile is mounted.
	CoreDNSConfDir = "/etc/coredns"
)

// CoreDNSPlugins are the plugins the Corefile uses, which the wrapper main
// must import and nothing more (TestCorefilePlugins reads it).
var CoreDNSPlugins = []string{"errors", "health", "ready", "kubernetes", "cache"}

// Corefile is CoreDNS's configuration for the cluster domain. There is no
// forward plugin: a dark site has no upstream resolver, so names outside
// the cluster's zones fail at once (SERVFAIL) instead of timing out, and no
// query can leave the cluster. No reload plugin either: the Deployment's
// template carries the Corefile's digest, so a changed Corefile rolls the
// pods.
func Corefile(domain string) string {
	return fmt.Sprintf(`.:%d {
    errors
    health :%d
    ready :%d
    kubernetes %s in-addr.arpa ip6.arpa {
        ttl 30
    }
    cache 30
}
`, CoreDNSPort, CoreDNSHealthPort, CoreDNSReadyPort, domain)
}

// CoreDNSObjects are the cluster DNS's objects in apply order: its
// identity and what it may read (services, endpoint slices and namespaces,
// list and watch: what the kubernetes plugin watches with pods disabled),
// the Corefile, the Deployment and the kube-dns Service at the cluster DNS
// address.
func CoreDNSObjects(s *spec.ClusterSpec) ([]Object, error) {
	s = spec.WithDefaults(s) // the service CIDR and domain, as the kubelets get them
	dns, err := ClusterDNS(s)
	if err != nil {
		return nil, err
	}
	corefile := Corefile(s.Workloads.Kubernetes.Domain())
	sum := sha256.Sum256([]byte(corefile))
	labels := map[string]any{"k8s-app": CoreDNSService}
	meta := func(name string) map[string]any {
		return map[string]any{"name": name, "namespace": CoreDNSNamespace, "labels": labels}
	}
	role := "kubedos:coredns"
	return []Object{
		{Kind: "ServiceAccount", Namespace: CoreDNSNamespace, Name: CoreDNSName, Body: mustJSON(map[string]any{
			"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(CoreDNSName),
		})},
		{Kind: "ClusterRole", Name: role, Body: mustJSON(map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": map[string]any{"name": role},
			"rules": []any{
				map[string]any{"apiGroups": []any{""}, "resources": []any{"services", "namespaces"}, "verbs": []any{"list", "watch"}},
				map[string]any{"apiGroups": []any{"discovery.k8s.io"}, "resources": []any{"endpointslices"}, "verbs": []any{"list", "watch"}},
			},
		})},
		{Kind: "ClusterRoleBinding", Name: role, Body: mustJSON(map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
			"metadata": map[string]any{"name": role},
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
			"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": CoreDNSName, "namespace": CoreDNSNamespace}},
		})},
		{Kind: "ConfigMap", Namespace: CoreDNSNamespace, Name: CoreDNSName, Body: mustJSON(map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(CoreDNSName),
			"data": map[string]any{"Corefile": corefile},
		})},
		{Kind: "Deployment", Namespace: CoreDNSNamespace, Name: CoreDNSName, Body: corednsDeployment(hex.EncodeToString(sum[:]))},
		{Kind: "Service", Namespace: CoreDNSNamespace, Name: CoreDNSService, Body: mustJSON(map[string]any{
			"apiVersion": "v1", "kind": "Service", "metadata": meta(CoreDNSService),
			"spec": map[string]any{"selector": labels, "clusterIP": dns.String(),
				"ports": []any{
					map[string]any{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": CoreDNSPort},
					map[string]any{"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": CoreDNSPort},
				}},
		})},
	}, nil
}

// CorefileDigestAnnotation on the pod template carries the Corefile's
// sha256: CoreDNS reads it only at start, so a change must roll the pods.
const CorefileDigestAnnotation = "kubedos.io/corefile-sha256"

func corednsDeployment(corefileSHA string) []byte {
	labels := map[string]any{"k8s-app": CoreDNSService}
	return mustJSON(map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": CoreDNSName, "namespace": CoreDNSNamespace, "labels": labels},
		"spec": map[string]any{
			"replicas": CoreDNSReplicas,
			"selector": map[string]any{"matchLabels": labels},
			"strategy": map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"maxUnavailable": 1}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels, "annotations": map[string]any{CorefileDigestAnnotation: corefileSHA}},
				"spec": map[string]any{
					"serviceAccountName": CoreDNSName,
					// CoreDNS is the cluster's resolver: it must not ask itself.
					"dnsPolicy":         "Default",
					"priorityClassName": "system-cluster-critical",
					"securityContext": map[string]any{"runAsNonRoot": true, "runAsUser": CoreDNSUser, "runAsGroup": CoreDNSUser,
						"seccompProfile": map[string]any{"type": "RuntimeDefault"}},
					// Spread the replicas over the workers where there are several.
					"affinity": map[string]any{"podAntiAffinity": map[string]any{
						"preferredDuringSchedulingIgnoredDuringExecution": []any{map[string]any{"weight": 100,
							"podAffinityTerm": map[string]any{"topologyKey": "kubernetes.io/hostname",
								"labelSelector": map[string]any{"matchLabels": labels}}}}}},
					"containers": []any{map[string]any{
						"name": CoreDNSName, "image": CoreDNSImage,
						// Baked into the worker's image, never pulled: there is no registry.
						"imagePullPolicy": "Never",
						"args":            []any{"-conf", CoreDNSConfDir + "/Corefile"},
						"ports": []any{
							map[string]any{"containerPort": CoreDNSPort, "name": "dns", "protocol": "UDP"},
							map[string]any{"containerPort": CoreDNSPort, "name": "dns-tcp", "protocol": "TCP"},
						},
						"livenessProbe": map[string]any{"httpGet": map[string]any{"path": "/health", "port": CoreDNSHealthPort},
							"initialDelaySeconds": 60, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 5},
						"readinessProbe": map[string]any{"httpGet": map[string]any{"path": "/ready", "port": CoreDNSReadyPort}, "periodSeconds": 5},
						"resources": map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "48Mi"},
							"limits": map[string]any{"memory": "128Mi"}},
						"securityContext": map[string]any{"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
							"capabilities": map[string]any{"drop": []any{"ALL"}}},
						"volumeMounts": []any{map[string]any{"name": "config", "mountPath": CoreDNSConfDir, "readOnly": true}},
					}},
					"volumes": []any{map[string]any{"name": "config", "configMap": map[string]any{"name": CoreDNSName,
						"items": []any{map[string]any{"key": "Corefile", "path": "Corefile"}}}}},
				},
			},
		},
	})
}
