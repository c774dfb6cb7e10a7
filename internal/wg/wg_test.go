package wg

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/spec"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func localSpec(t *testing.T) *spec.ClusterSpec {
	t.Helper()
	s, err := spec.LoadBytes(examples.Local)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pub(t *testing.T) string {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().String()
}

func allPlanes(k string) map[spec.Plane]string {
	return map[spec.Plane]string{spec.PlaneControl: k, spec.PlaneObservability: k, spec.PlaneKubernetes: k}
}

func TestRender(t *testing.T) {
	s := localSpec(t)
	km, k1, k2 := pub(t), pub(t), pub(t)
	all := []Member{{Name: "master", Keys: allPlanes(km)}, {Name: "w-1", Keys: allPlanes(k1)}, {Name: "w-2", Keys: allPlanes(k2)}}

	cases := []struct {
		name    string
		self    string
		members []Member
		// want is per plane "address peer=allowed@endpoint…" for control.
		control string
		forward bool
	}{
		{"master peers with every worker", "master", all,
			"10.77.0.10/24 w-1=10.77.0.21/32@10.20.0.21:51820 w-2=10.77.0.22/32@10.20.0.22:51820", true},
		{"a worker peers with the master alone", "w-1", all,
			"10.77.0.21/24 master=10.77.0.0/24@10.20.0.10:51820", false},
		{"a node that has not joined is left out", "master", all[:2],
			"10.77.0.10/24 w-1=10.77.0.21/32@10.20.0.21:51820", true},
		{"before the master joins a worker has no peer", "w-2", all[1:],
			"10.77.0.22/24", false},
		{"alone", "master", nil, "10.77.0.10/24", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ifcs, err := Render(s, c.self, c.members)
			if err != nil {
				t.Fatal(err)
			}
			if len(ifcs) != 3 {
				t.Fatalf("%d interfaces, want 3", len(ifcs))
			}
			names := []string{ifcs[0].Name, ifcs[1].Name, ifcs[2].Name}
			if !reflect.DeepEqual(names, []string{"wg-control", "wg-obs", "wg-kubernetes"}) {
				t.Errorf("interfaces %v", names)
			}
			for _, ifc := range ifcs {
				if len(ifc.Name) > 15 {
					t.Errorf("interface name %q is longer than the kernel allows", ifc.Name)
				}
				if ifc.Forward != c.forward {
					t.Errorf("%s forward=%v, want %v", ifc.Name, ifc.Forward, c.forward)
				}
			}
			got := []string{ifcs[0].Address}
			for _, p := range ifcs[0].Peers {
				got = append(got, p.Name+"="+strings.Join(p.AllowedIPs, ",")+"@"+p.Endpoint)
			}
			if g := strings.Join(got, " "); g != c.control {
				t.Errorf("control plane:\n got %s\nwant %s", g, c.control)
			}
			if c.self != "master" && len(ifcs[0].Peers) == 1 {
				if p := ifcs[0].Peers[0]; p.KeepaliveSeconds != Keepalive || p.PublicKey != km {
					t.Errorf("worker's master peer: %+v", p)
				}
			}
			// Each plane has its own port and prefix.
			if ifcs[1].ListenPort != 51821 || !strings.HasPrefix(ifcs[1].Address, "10.78.0.") {
				t.Errorf("observability plane: %+v", ifcs[1])
			}
		})
	}
}

func TestRenderRefuses(t *testing.T) {
	s := localSpec(t)
	if _, err := Render(s, "w-9", nil); err == nil || !strings.Contains(err.Error(), `"w-9"`) {
		t.Errorf("unknown node: %v", err)
	}
	noMaster := localSpec(t)
	noMaster.Topology.Nodes = noMaster.Topology.Nodes[1:]
	if _, err := Render(noMaster, "w-1", nil); err == nil || !strings.Contains(err.Error(), "no master") {
		t.Errorf("no master: %v", err)
	}
	bad := localSpec(t)
	ps := bad.Networking.Planes[spec.PlaneKubernetes]
	ps.CIDR = "10.79.0.0/33"
	bad.Networking.Planes[spec.PlaneKubernetes] = ps
	if _, err := Render(bad, "w-1", nil); err == nil || !strings.Contains(err.Error(), "networking.planes.kubernetes.cidr") {
		t.Errorf("bad cidr: %v", err)
	}
}

func TestCheckPublicKeys(t *testing.T) {
	s := localSpec(t)
	k := pub(t)
	cases := []struct {
		name string
		keys map[spec.Plane]string
		want []string // substrings; none means accepted
	}{
		{"every plane", allPlanes(k), nil},
		{"a plane missing", map[spec.Plane]string{spec.PlaneControl: k, spec.PlaneKubernetes: k}, []string{"planes.observability: no public key"}},
		{"not base64", map[spec.Plane]string{spec.PlaneControl: "zz", spec.PlaneObservability: k, spec.PlaneKubernetes: k}, []string{"planes.control:"}},
		{"all zero", map[spec.Plane]string{spec.PlaneControl: wgtypes.Key{}.String(), spec.PlaneObservability: k, spec.PlaneKubernetes: k}, []string{"planes.control: the all-zero key"}},
		{"unknown plane", map[spec.Plane]string{spec.PlaneControl: k, spec.PlaneObservability: k, spec.PlaneKubernetes: k, "storage": k}, []string{"planes.storage: not a plane"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckPublicKeys(s, c.keys)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadOrCreateKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wg")
	first, err := LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(spec.Planes) {
		t.Fatalf("%d keys", len(first))
	}
	seen := map[wgtypes.Key]bool{}
	for p, k := range first {
		if seen[k] {
			t.Errorf("plane %s reuses a key", p)
		}
		seen[k] = true
		fi, err := os.Stat(filepath.Join(dir, string(p)+".key"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", fi.Name(), fi.Mode().Perm())
		}
	}
	again, err := LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first, again) {
		t.Error("keys changed on the second load")
	}
	if err := CheckPublicKeys(localSpec(t), PublicKeys(again)); err != nil {
		t.Errorf("own public keys refused: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "control.key"), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKeys(dir); err == nil || !strings.Contains(err.Error(), "control.key") {
		t.Errorf("a corrupt key: %v", err)
	}
}

func TestDeviceConfig(t *testing.T) {
	s := localSpec(t)
	km, k1 := pub(t), pub(t)
	ifcs, err := Render(s, "w-1", []Member{{Name: "master", Keys: allPlanes(km)}, {Name: "w-1", Keys: allPlanes(k1)}})
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := wgtypes.GeneratePrivateKey()
	cfg, err := deviceConfig(ifcs[0], priv)
	if err != nil {
		t.Fatal(err)
	}
	if *cfg.ListenPort != 51820 || cfg.ReplacePeers || len(cfg.Peers) != 1 {
		t.Fatalf("config %+v", cfg)
	}
	p := cfg.Peers[0]
	if p.PublicKey.String() != km || p.Endpoint.String() != "10.20.0.10:51820" || p.AllowedIPs[0].String() != "10.77.0.0/24" ||
		*p.PersistentKeepaliveInterval != Keepalive*1e9 || !p.ReplaceAllowedIPs {
		t.Errorf("peer %+v", p)
	}
	// Peers the device has and the plane no longer lists are removed; the
	// wanted one is kept (updated in place, its session intact).
	gone, _ := wgtypes.GeneratePrivateKey()
	rm := removals([]wgtypes.Peer{{PublicKey: p.PublicKey}, {PublicKey: gone.PublicKey()}}, cfg.Peers)
	if len(rm) != 1 || rm[0].PublicKey != gone.PublicKey() || !rm[0].Remove {
		t.Errorf("removals %+v", rm)
	}
	ifcs[0].Peers[0].Endpoint = "master:51820"
	if _, err := deviceConfig(ifcs[0], priv); err == nil || !strings.Contains(err.Error(), "peer master: endpoint") {
		t.Errorf("bad endpoint: %v", err)
	}
}

// On the kubernetes plane of a Kubernetes cluster, pod addresses ride the
// plane: the master allows each kubelet node its /24 (WireGuard drops a
// packet whose source its peer is not allowed), the others reach every pod
// through the master, and every node routes the pod CIDR into the plane.
func TestRenderPodRoutes(t *testing.T) {
	s, err := spec.LoadBytes(examples.LocalK8s)
	if err != nil {
		t.Fatal(err)
	}
	km, kc, kw := pub(t), pub(t), pub(t)
	all := []Member{{Name: "master", Keys: allPlanes(km)}, {Name: "cp-1", Keys: allPlanes(kc)}, {Name: "w-1", Keys: allPlanes(kw)}}
	allowed := func(self string) (map[string]string, []string) {
		ifcs, err := Render(s, self, all)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		var routes []string
		for _, ifc := range ifcs {
			if ifc.Plane != spec.PlaneKubernetes {
				if len(ifc.Routes) > 0 {
					t.Errorf("%s: plane %s routes %v", self, ifc.Plane, ifc.Routes)
				}
				continue
			}
			routes = ifc.Routes
			for _, p := range ifc.Peers {
				out[p.Name] = strings.Join(p.AllowedIPs, ",")
			}
		}
		return out, routes
	}
	m, routes := allowed("master")
	if m["w-1"] != "10.89.0.21/32,10.244.21.0/24" || m["cp-1"] != "10.89.0.11/32" {
		t.Errorf("master allows %v", m)
	}
	if !reflect.DeepEqual(routes, []string{"10.244.0.0/16"}) {
		t.Errorf("master routes %v", routes)
	}
	for _, self := range []string{"cp-1", "w-1"} {
		m, routes := allowed(self)
		if m["master"] != "10.89.0.0/24,10.244.0.0/16" || !reflect.DeepEqual(routes, []string{"10.244.0.0/16"}) {
			t.Errorf("%s allows %v, routes %v", self, m, routes)
		}
	}
	// Without Kubernetes, nothing beyond the plane.
	m, routes = func() (map[string]string, []string) {
		ifcs, err := Render(localSpec(t), "master", []Member{{Name: "master", Keys: allPlanes(km)}, {Name: "w-1", Keys: allPlanes(kw)}})
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"w-1": strings.Join(ifcs[2].Peers[0].AllowedIPs, ",")}, ifcs[2].Routes
	}()
	if m["w-1"] != "10.79.0.21/32" || routes != nil {
		t.Errorf("without Kubernetes: %v %v", m, routes)
	}
}
