package kubeplan

import "github.com/kubedos/kubedos/internal/spec"

// The cluster-level objects convergence applies once the API server
// answers (server-side apply, field manager kubedos): what a kubeadm
// cluster gets from `kubeadm init` phases, and the acceptance probe.

// ProbeNamespace holds the acceptance probe.
const ProbeNamespace = "kubedos-probe"

// MetricsReaderRole lets the monitoring group read the kubelets' metrics.
const MetricsReaderRole = "kubedos:kubelet-metrics-reader"

// ProbeReplicas is how many probe pods the acceptance gate wants served.
const ProbeReplicas = 2

// Object is one manifest: its kind and name for messages, and its body.
type Object struct {
	Kind, Namespace, Name string
	Body                  []byte
}

// Addons are the objects every kubedos Kubernetes cluster has, in apply
// order: the cluster DNS first (pods started after it resolve), then the
// probe.
func Addons(s *spec.ClusterSpec) ([]Object, error) {
	dns, err := CoreDNSObjects(s)
	if err != nil {
		return nil, err
	}
	return append(dns, []Object{
		{Kind: "ClusterRoleBinding", Name: "kubedos:apiserver-kubelet-client", Body: mustJSON(map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
			"metadata": map[string]any{"name": "kubedos:apiserver-kubelet-client"},
			// The API server's kubelet client certificate carries no group:
			// it gets the kubelet API and nothing else (docs/kubernetes.md).
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:kubelet-api-admin"},
			"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kube-apiserver-kubelet-client"}},
		})},
		// The prometheus node's metrics credential (pki.SignMonitoring, O
		// system:monitoring) reads the API servers' /metrics by the default
		// system:monitoring role; this lets it read the kubelets' too, and
		// nothing else.
		{Kind: "ClusterRole", Name: MetricsReaderRole, Body: mustJSON(map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": map[string]any{"name": MetricsReaderRole},
			"rules":    []any{map[string]any{"apiGroups": []string{""}, "resources": []string{"nodes/metrics"}, "verbs": []string{"get"}}},
		})},
		{Kind: "ClusterRoleBinding", Name: MetricsReaderRole, Body: mustJSON(map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
			"metadata": map[string]any{"name": MetricsReaderRole},
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": MetricsReaderRole},
			"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:monitoring"}},
		})},
		{Kind: "Namespace", Name: ProbeNamespace, Body: mustJSON(map[string]any{
			"apiVersion": "v1", "kind": "Namespace",
			"metadata": map[string]any{"name": ProbeNamespace, "labels": map[string]any{
				"pod-security.kubernetes.io/enforce": "restricted"}},
		})},
		{Kind: "Deployment", Namespace: ProbeNamespace, Name: "probe", Body: probeDeployment()},
		{Kind: "Service", Namespace: ProbeNamespace, Name: "probe", Body: mustJSON(map[string]any{
			"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": "probe", "namespace": ProbeNamespace},
			"spec": map[string]any{"selector": map[string]any{"app": "probe"},
				"ports": []any{map[string]any{"name": "http", "port": 80, "targetPort": 8080}}},
		})},
	}...), nil
}

func probeDeployment() []byte {
	env := func(name, path string) map[string]any {
		return map[string]any{"name": name, "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": path}}}
	}
	return mustJSON(map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "probe", "namespace": ProbeNamespace},
		"spec": map[string]any{
			"replicas": ProbeReplicas,
			"selector": map[string]any{"matchLabels": map[string]any{"app": "probe"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": "probe"}},
				"spec": map[string]any{
					"automountServiceAccountToken": false,
					"securityContext": map[string]any{"runAsNonRoot": true, "runAsUser": 65534, "runAsGroup": 65534,
						"seccompProfile": map[string]any{"type": "RuntimeDefault"}},
					"containers": []any{map[string]any{
						"name": "probe", "image": ProbeImage,
						// Baked into the worker's image, never pulled: there is no registry.
						"imagePullPolicy": "Never",
						"ports":           []any{map[string]any{"containerPort": 8080, "name": "http"}},
						"env":             []any{env("POD_NAME", "metadata.name"), env("NODE_NAME", "spec.nodeName")},
						"readinessProbe":  map[string]any{"httpGet": map[string]any{"path": "/healthz", "port": 8080}, "periodSeconds": 5},
						"resources":       map[string]any{"requests": map[string]any{"cpu": "10m", "memory": "16Mi"}, "limits": map[string]any{"memory": "32Mi"}},
						"securityContext": map[string]any{"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
							"capabilities": map[string]any{"drop": []any{"ALL"}}},
					}},
				},
			},
		},
	})
}
