package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/kubedos/kubedos/internal/errdefs"
	"gopkg.in/yaml.v3"
)

// resource is where a kind lives in the API.
type resource struct {
	group      string // "" is the core group (/api/v1)
	plural     string
	namespaced bool
}

// kinds is every kind Apply knows: what kubedos converges. Another kind
// is an error naming it.
var kinds = map[string]resource{
	"Namespace":          {"", "namespaces", false},
	"ServiceAccount":     {"", "serviceaccounts", true},
	"ConfigMap":          {"", "configmaps", true},
	"Service":            {"", "services", true},
	"Deployment":         {"apps", "deployments", true},
	"DaemonSet":          {"apps", "daemonsets", true},
	"ClusterRole":        {"rbac.authorization.k8s.io", "clusterroles", false},
	"ClusterRoleBinding": {"rbac.authorization.k8s.io", "clusterrolebindings", false},
	"RoleBinding":        {"rbac.authorization.k8s.io", "rolebindings", true},
}

// Kinds is the kinds Apply knows, sorted.
func Kinds() []string {
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// header is what ObjectPath reads of an object.
type header struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
}

// ObjectPath is the API path of obj (one object, YAML or JSON) from its
// apiVersion, kind, namespace and name: /api/v1/namespaces/NS/configmaps/N,
// /apis/apps/v1/namespaces/NS/deployments/N, /apis/rbac…/clusterroles/N.
// A namespaced kind needs its namespace, a cluster-scoped one must have
// none, and the apiVersion's group must be the kind's.
func ObjectPath(obj []byte) (string, error) {
	var h header
	dec := yaml.NewDecoder(bytes.NewReader(obj))
	if err := dec.Decode(&h); err != nil {
		return "", fmt.Errorf("%w: object: %w", errdefs.ErrInvalid, err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("%w: %s: one object per Apply, not a stream of documents", errdefs.ErrInvalid, clip(h.Kind))
	}
	r, ok := kinds[h.Kind]
	if !ok {
		return "", fmt.Errorf("%w: kind %q is not one kube.Apply knows (%s)", errdefs.ErrInvalid, clip(h.Kind), strings.Join(Kinds(), ", "))
	}
	group, version, found := strings.Cut(h.APIVersion, "/")
	if !found {
		group, version = "", h.APIVersion
	}
	if group != r.group || !segment(version) {
		want := r.group + "/<version>"
		if r.group == "" {
			want = "v1"
		}
		return "", fmt.Errorf("%w: %s apiVersion %q: want %s", errdefs.ErrInvalid, h.Kind, clip(h.APIVersion), want)
	}
	name, ns := h.Metadata.Name, h.Metadata.Namespace
	if !segment(name) {
		return "", fmt.Errorf("%w: %s metadata.name %q is not a valid name", errdefs.ErrInvalid, h.Kind, clip(name))
	}
	prefix := "/apis/" + group + "/" + version
	if group == "" {
		prefix = "/api/" + version
	}
	switch {
	case r.namespaced && !segment(ns):
		return "", fmt.Errorf("%w: %s %s: metadata.namespace %q: a namespaced kind needs a valid namespace", errdefs.ErrInvalid, h.Kind, name, clip(ns))
	case r.namespaced:
		return prefix + "/namespaces/" + ns + "/" + r.plural + "/" + name, nil
	case ns != "":
		return "", fmt.Errorf("%w: %s %s is cluster-scoped but names namespace %q", errdefs.ErrInvalid, h.Kind, name, clip(ns))
	}
	return prefix + "/" + r.plural + "/" + name, nil
}

// segment accepts what Kubernetes names may hold and nothing that could
// leave a path segment: letters, digits, '-', '.', ':' (RBAC names such
// as system:node-proxier), at most 253 bytes, not "." or "..".
func segment(s string) bool {
	if s == "" || len(s) > 253 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == ':') {
			return false
		}
	}
	return true
}

// Node is what kubedos reads of a Node.
type Node struct {
	Name           string
	Ready          bool
	Addresses      []Address
	KubeletVersion string
}

// Address is one of a node's addresses (InternalIP, Hostname, …).
type Address struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

// Pod is what kubedos reads of a Pod.
type Pod struct {
	Namespace, Name string
	Phase           string
	// Ready: the pod's Ready condition is True.
	Ready bool
	Node  string
}

type condition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
}

func ready(cs []condition) bool {
	for _, c := range cs {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// Nodes lists the cluster's nodes.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Status struct {
				Conditions []condition `json:"conditions"`
				Addresses  []Address   `json:"addresses"`
				NodeInfo   struct {
					KubeletVersion string `json:"kubeletVersion"`
				} `json:"nodeInfo"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := c.Get(ctx, "/api/v1/nodes", &list); err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(list.Items))
	for _, it := range list.Items {
		out = append(out, Node{Name: it.Metadata.Name, Ready: ready(it.Status.Conditions), Addresses: it.Status.Addresses,
			KubeletVersion: it.Status.NodeInfo.KubeletVersion})
	}
	return out, nil
}

// Pods lists the pods of namespace ("" for every namespace).
func (c *Client) Pods(ctx context.Context, namespace string) ([]Pod, error) {
	path := "/api/v1/pods"
	if namespace != "" {
		if !segment(namespace) {
			return nil, fmt.Errorf("%w: namespace %q is not a valid name", errdefs.ErrInvalid, clip(namespace))
		}
		path = "/api/v1/namespaces/" + namespace + "/pods"
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
			Spec struct {
				NodeName string `json:"nodeName"`
			} `json:"spec"`
			Status struct {
				Phase      string      `json:"phase"`
				Conditions []condition `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := c.Get(ctx, path, &list); err != nil {
		return nil, err
	}
	out := make([]Pod, 0, len(list.Items))
	for _, it := range list.Items {
		out = append(out, Pod{Namespace: it.Metadata.Namespace, Name: it.Metadata.Name, Phase: it.Status.Phase,
			Ready: ready(it.Status.Conditions), Node: it.Spec.NodeName})
	}
	return out, nil
}
