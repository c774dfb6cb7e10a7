package kubeplan

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestCoreDNSVersionMatchesModule(t *testing.T) {
	mod, err := os.ReadFile("../../coredns/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^require github.com/coredns/coredns (v\S+)|^\s*github.com/coredns/coredns (v\S+)`).FindSubmatch(mod)
	if m == nil || string(m[1])+string(m[2]) != CoreDNSVersion {
		t.Fatalf("coredns/go.mod pins %q, kubeplan.CoreDNSVersion is %s", m, CoreDNSVersion)
	}
	if !strings.HasSuffix(CoreDNSImage, ":"+strings.TrimPrefix(CoreDNSVersion, "v")) {
		t.Errorf("image %s is not tagged with %s", CoreDNSImage, CoreDNSVersion)
	}
}

// TestCorefilePlugins: the wrapper main imports exactly the plugins the
// Corefile uses. One missing and CoreDNS refuses the Corefile at start
// ("unknown directive"); one more is code linked for nothing.
func TestCorefilePlugins(t *testing.T) {
	src, err := os.ReadFile("../../coredns/cmd/coredns/main.go")
	if err != nil {
		t.Fatal(err)
	}
	var imported []string
	for _, m := range regexp.MustCompile(`_ "github.com/coredns/coredns/plugin/(\w+)"`).FindAllSubmatch(src, -1) {
		imported = append(imported, string(m[1]))
	}
	if strings.Contains(string(src), `"github.com/coredns/coredns/core/plugin"`) {
		t.Error("main imports core/plugin: every plugin would be linked")
	}
	var used []string
	for _, line := range strings.Split(Corefile("cluster.local"), "\n") {
		// Directives are the first word of the server block's lines (4
		// spaces); deeper lines are a plugin's options.
		if strings.HasPrefix(line, "    ") && !strings.HasPrefix(line, "     ") && strings.TrimSpace(line) != "}" {
			used = append(used, strings.Fields(line)[0])
		}
	}
	want := slices.Clone(CoreDNSPlugins)
	for _, l := range [][]string{imported, used, want} {
		slices.Sort(l)
	}
	if !slices.Equal(imported, want) || !slices.Equal(used, want) {
		t.Errorf("main imports %v, the Corefile uses %v, CoreDNSPlugins is %v", imported, used, want)
	}
	if slices.Contains(used, "forward") {
		t.Error("the Corefile forwards: a dark site has no upstream")
	}
}

// object finds kind/name in objs and decodes it.
func object(t *testing.T, objs []Object, kind, name string) map[string]any {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Name == name {
			var m map[string]any
			if err := json.Unmarshal(o.Body, &m); err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return nil
}

func dig(m any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			mm, _ := m.(map[string]any)
			m = mm[k]
		case int:
			l, _ := m.([]any)
			if k >= len(l) {
				return nil
			}
			m = l[k]
		}
	}
	return m
}

func TestCoreDNSObjects(t *testing.T) {
	s := localK8s(t)
	objs, err := Addons(s)
	if err != nil {
		t.Fatal(err)
	}
	// The cluster DNS first, so the probe's pods start with a resolver.
	if objs[0].Kind != "ServiceAccount" || objs[0].Name != CoreDNSName {
		t.Errorf("first object is %s %s", objs[0].Kind, objs[0].Name)
	}
	p, err := For(s, "w-1")
	if err != nil {
		t.Fatal(err)
	}
	svc := object(t, objs, "Service", CoreDNSService)
	// The Service holds the address every kubelet hands its pods.
	if got := dig(svc, "spec", "clusterIP"); got != p.ClusterDNS || p.ClusterDNS == "" {
		t.Errorf("kube-dns clusterIP %v, kubelets resolve through %q", got, p.ClusterDNS)
	}
	for i, proto := range []string{"UDP", "TCP"} {
		port := dig(svc, "spec", "ports", i)
		if dig(port, "protocol") != proto || dig(port, "port") != 53.0 || dig(port, "targetPort") != float64(CoreDNSPort) {
			t.Errorf("kube-dns port %d: %v", i, port)
		}
	}
	cm := object(t, objs, "ConfigMap", CoreDNSName)
	corefile, _ := dig(cm, "data", "Corefile").(string)
	if !strings.Contains(corefile, "kubernetes "+p.ClusterDomain+" in-addr.arpa ip6.arpa") {
		t.Errorf("Corefile does not serve %s:\n%s", p.ClusterDomain, corefile)
	}

	d := object(t, objs, "Deployment", CoreDNSName)
	pod := dig(d, "spec", "template", "spec")
	c := dig(pod, "containers", 0)
	for _, tt := range []struct {
		what string
		got  any
		want any
	}{
		{"replicas", dig(d, "spec", "replicas"), float64(CoreDNSReplicas)},
		{"image", dig(c, "image"), CoreDNSImage},
		{"imagePullPolicy", dig(c, "imagePullPolicy"), "Never"},
		{"runAsNonRoot", dig(pod, "securityContext", "runAsNonRoot"), true},
		{"runAsUser", dig(pod, "securityContext", "runAsUser"), float64(CoreDNSUser)},
		{"readOnlyRootFilesystem", dig(c, "securityContext", "readOnlyRootFilesystem"), true},
		{"allowPrivilegeEscalation", dig(c, "securityContext", "allowPrivilegeEscalation"), false},
		{"capabilities.drop", dig(c, "securityContext", "capabilities", "drop", 0), "ALL"},
		{"capabilities.add", dig(c, "securityContext", "capabilities", "add"), nil},
		{"dnsPolicy", dig(pod, "dnsPolicy"), "Default"},
		{"serviceAccountName", dig(pod, "serviceAccountName"), CoreDNSName},
		{"readiness", dig(c, "readinessProbe", "httpGet", "port"), float64(CoreDNSReadyPort)},
		{"liveness", dig(c, "livenessProbe", "httpGet", "port"), float64(CoreDNSHealthPort)},
		{"conf", dig(c, "args", 1), CoreDNSConfDir + "/Corefile"},
	} {
		if tt.got != tt.want {
			t.Errorf("deployment %s = %v, want %v", tt.what, tt.got, tt.want)
		}
	}
	if CoreDNSPort < 1024 {
		t.Errorf("port %d needs NET_BIND_SERVICE", CoreDNSPort)
	}
	sum := dig(d, "spec", "template", "metadata", "annotations", CorefileDigestAnnotation)

	// Least privilege: read-only, and nothing but what the kubernetes
	// plugin watches (no secrets, no pods with pods disabled).
	role := object(t, objs, "ClusterRole", "kubedos:coredns")
	rules, _ := dig(role, "rules").([]any)
	var resources []string
	for _, r := range rules {
		for _, v := range dig(r, "verbs").([]any) {
			if v != "list" && v != "watch" {
				t.Errorf("ClusterRole grants %v", v)
			}
		}
		for _, res := range dig(r, "resources").([]any) {
			resources = append(resources, res.(string))
		}
	}
	slices.Sort(resources)
	if want := []string{"endpointslices", "namespaces", "services"}; !slices.Equal(resources, want) {
		t.Errorf("ClusterRole resources %v, want %v", resources, want)
	}
	binding := object(t, objs, "ClusterRoleBinding", "kubedos:coredns")
	if dig(binding, "subjects", 0, "name") != CoreDNSName || dig(binding, "subjects", 0, "namespace") != CoreDNSNamespace ||
		dig(binding, "roleRef", "name") != "kubedos:coredns" {
		t.Errorf("binding: %v", binding)
	}

	// The spec's domain and service CIDR reach the Corefile and the
	// Service; a changed Corefile changes the pod template (CoreDNS reads
	// it only at start).
	s.Workloads.Kubernetes.ClusterDomain = "k8s.example.internal"
	s.Workloads.Kubernetes.ServiceCIDR = "10.100.0.0/16"
	objs, err = CoreDNSObjects(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := dig(object(t, objs, "ConfigMap", CoreDNSName), "data", "Corefile").(string); !strings.Contains(got, "kubernetes k8s.example.internal ") {
		t.Errorf("Corefile:\n%s", got)
	}
	if got := dig(object(t, objs, "Service", CoreDNSService), "spec", "clusterIP"); got != "10.100.0.10" {
		t.Errorf("clusterIP %v", got)
	}
	if got := dig(object(t, objs, "Deployment", CoreDNSName), "spec", "template", "metadata", "annotations", CorefileDigestAnnotation); got == sum || got == nil {
		t.Errorf("the Corefile changed, the pod template's digest did not (%v)", got)
	}

	s.Workloads.Kubernetes.ServiceCIDR = "10.100.0.0/30"
	if _, err := CoreDNSObjects(s); err == nil || !strings.Contains(err.Error(), "serviceCIDR") {
		t.Errorf("a service CIDR without a tenth address: %v", err)
	}
}
