package kubeplan

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/spec"
)

func reference(t *testing.T) *spec.ClusterSpec {
	t.Helper()
	doc, err := spec.Parse(examples.Reference)
	if err != nil {
		t.Fatal(err)
	}
	return spec.WithDefaults(doc.Spec)
}

var testHost = Host{LANInterface: "ens18"}

func TestForLoadBalancers(t *testing.T) {
	s := reference(t)
	backends := []Backend{{"cp-1", "10.10.10.31"}, {"cp-2", "10.10.10.32"}, {"cp-3", "10.10.10.33"}}
	for _, tt := range []struct {
		node     string
		priority int
		peers    []string
	}{
		{"lb-1", 254, []string{"10.10.10.52", "10.10.10.53"}},
		{"lb-2", 253, []string{"10.10.10.51", "10.10.10.53"}},
		{"lb-3", 252, []string{"10.10.10.51", "10.10.10.52"}},
	} {
		t.Run(tt.node, func(t *testing.T) {
			p, err := For(s, tt.node)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Components, []Component{HAProxy, Keepalived}) || p.LB == nil {
				t.Fatalf("components %v, lb %+v", p.Components, p.LB)
			}
			lb := p.LB
			if lb.VIP != "10.10.10.100" || lb.PrefixBits != 24 || lb.RouterID != 100 || lb.Priority != tt.priority {
				t.Errorf("vip %s/%d, router %d, priority %d", lb.VIP, lb.PrefixBits, lb.RouterID, lb.Priority)
			}
			if !slices.Equal(lb.Peers, tt.peers) || !slices.Equal(lb.Backends, backends) {
				t.Errorf("peers %v, backends %v", lb.Peers, lb.Backends)
			}
			files, err := Files(p, testHost)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, f := range files {
				got[f.Path] = string(f.Data)
			}
			if len(got) != 2 || got[HAProxyConfig] == "" || got[KeepalivedConfig] == "" {
				t.Fatalf("files %v: want only haproxy's and keepalived's", slices.Sorted(func(yield func(string) bool) {
					for k := range got {
						if !yield(k) {
							return
						}
					}
				}))
			}
			hc, kc := got[HAProxyConfig], got[KeepalivedConfig]
			for _, want := range []string{"bind 10.10.10.100:6443 ", "mode tcp", "uri /readyz",
				"ca-file " + PKIDir + "/ca.crt", "server cp-2 10.10.10.32:6443 check-sni cp-2 verifyhost cp-2",
				"use_backend kube-apiserver-listening if { nbsrv(kube-apiserver) eq 0 }",
				"backend kube-apiserver-listening\n\tbalance leastconn\n\tdefault-server check inter 5s fall 2 rise 2\n", "\tserver cp-2 10.10.10.32:6443\n"} {
				if !strings.Contains(hc, want) {
					t.Errorf("haproxy.cfg lacks %q:\n%s", want, hc)
				}
			}
			for _, want := range []string{"interface ens18", "priority " + strconv.Itoa(tt.priority), "unicast_src_ip 10.10.10.5" + tt.node[3:] + "\n",
				"10.10.10.100/24 dev ens18", "vrrp_track_process haproxy {\n\tprocess haproxy\n", "track_process {\n\t\thaproxy\n",
				"\tstate BACKUP\n\tnopreempt\n"} {
				if !strings.Contains(kc, want) {
					t.Errorf("keepalived.conf lacks %q:\n%s", want, kc)
				}
			}
			for _, peer := range tt.peers {
				if !strings.Contains(kc, "\t\t"+peer+"\n") {
					t.Errorf("keepalived.conf has no unicast peer %s", peer)
				}
			}
			if strings.Contains(kc, "auth") {
				t.Errorf("keepalived.conf authenticates VRRP (deprecated, and protects nothing):\n%s", kc)
			}
			if _, err := Files(p, Host{LANInterface: "ens18; rm -rf /"}); err == nil {
				t.Error("a bad interface name reached keepalived.conf")
			}
		})
	}
}

// With load balancers every kubeconfig names the VIP; without, the first
// control-plane node on the kubernetes plane (as before there were any).
func TestKubeconfigsUseTheVIP(t *testing.T) {
	for _, tt := range []struct {
		name  string
		s     *spec.ClusterSpec
		nodes []string
		want  string
	}{
		{"load balancers", reference(t), []string{"cp-2", "w-3"}, "https://10.10.10.100:6443"},
		{"control planes", localHA(t), []string{"cp-1", "cp-3", "w-1"}, "https://10.50.0.5:6443"},
		{"none", localK8s(t), []string{"cp-1", "w-1"}, "https://10.89.0.11:6443"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, node := range tt.nodes {
				p, err := For(tt.s, node)
				if err != nil {
					t.Fatal(err)
				}
				if p.APIServer != tt.want {
					t.Errorf("%s: API server %s, want %s", node, p.APIServer, tt.want)
				}
				files, err := Files(p, testHost)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, f := range files {
					if strings.HasSuffix(f.Path, ".kubeconfig") {
						n++
						if !bytes.Contains(f.Data, []byte(`"server": "`+tt.want+`"`)) {
							t.Errorf("%s %s: server is not %s:\n%s", node, f.Path, tt.want, f.Data)
						}
					}
				}
				if n == 0 {
					t.Errorf("%s: no kubeconfig", node)
				}
			}
		})
	}
}

func TestValidateRefusesBadLB(t *testing.T) {
	good, err := For(reference(t), "lb-1")
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(p *Plan){
		"peer":          func(p *Plan) { p.LB.Peers = append(p.LB.Peers, "10.10.10.52\n\tvirtual_ipaddress") },
		"vip":           func(p *Plan) { p.LB.VIP = "10.10.10.100 transparent" },
		"backend name":  func(p *Plan) { p.LB.Backends[0].Name = "cp-1 backup" },
		"no backends":   func(p *Plan) { p.LB.Backends = nil },
		"priority":      func(p *Plan) { p.LB.Priority = 255 },
		"router":        func(p *Plan) { p.LB.RouterID = 0 },
		"prefix":        func(p *Plan) { p.LB.PrefixBits = 0 },
		"lb elsewhere":  func(p *Plan) { p.Components = []Component{Kubelet} },
		"lb is missing": func(p *Plan) { p.LB = nil },
	} {
		p := *good
		lb := *good.LB
		lb.Peers, lb.Backends = slices.Clone(lb.Peers), slices.Clone(lb.Backends)
		p.LB = &lb
		mutate(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("%s: a bad plan validated", name)
		}
	}
}

func TestLBUnits(t *testing.T) {
	for _, c := range []Component{HAProxy, Keepalived} {
		if Unit(c) != "" || UnitName(c) != string(c)+".service" || !Reloads(c) {
			t.Errorf("%s: not Debian's unit, reloaded", c)
		}
		d := DropIn(c)
		if !strings.Contains(d, "ConditionPathExists="+Dir+"/") || DropInFile(c) != "/etc/systemd/system/"+string(c)+".service.d/kubedos.conf" {
			t.Errorf("%s drop-in %s:\n%s", c, DropInFile(c), d)
		}
	}
	if !strings.Contains(DropIn(HAProxy), `CONFIG=`+HAProxyConfig) || !strings.Contains(DropIn(Keepalived), "--use-file="+KeepalivedConfig) {
		t.Error("a drop-in does not point at kubedosd's configuration")
	}
	if Links([]Component{HAProxy, Keepalived}) != nil {
		t.Error("load balancers link kube")
	}
	if got := RolePackages(reference(t), spec.RoleLoadBalancer); !slices.Equal(got, []string{"haproxy", "keepalived"}) {
		t.Errorf("loadbalancer packages %v", got)
	}
	if Reloads(APIServer) {
		t.Error("kube-apiserver is reloaded")
	}
}

// The generated configurations are checked by haproxy and keepalived
// themselves when they are installed (apt-get install haproxy keepalived).
// Each check is shown to fail on a broken configuration, so a pass means
// the tool read ours.
func TestHAProxyChecksConfig(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed (apt-get install haproxy): configuration not checked by haproxy")
	}
	p, err := For(reference(t), "lb-1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// haproxy reads the CA file while it parses: point at one that exists.
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, testCA(t), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(haproxyConfig(p)), pki("ca.crt"), ca)
	check := func(name, cfg string) error {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-c", "-f", f).CombinedOutput()
		if err != nil {
			return &toolError{err, out}
		}
		return nil
	}
	if err := check("haproxy.cfg", cfg); err != nil {
		t.Fatalf("haproxy -c refuses the configuration: %v\n%s", err, cfg)
	}
	if err := check("broken.cfg", strings.Replace(cfg, "balance leastconn", "balance fastest", 1)); err == nil {
		t.Fatal("haproxy -c accepts a broken configuration: the check proves nothing")
	}
}

func TestKeepalivedChecksConfig(t *testing.T) {
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		t.Skip("keepalived is not installed (apt-get install keepalived): configuration not checked by keepalived")
	}
	// keepalived --config-test requires the interface to exist (and not be
	// a loopback): take one of this machine's.
	ifc := ""
	ifcs, _ := net.Interfaces()
	for _, i := range ifcs {
		if i.Flags&net.FlagLoopback == 0 && i.Flags&net.FlagUp != 0 && i.Flags&net.FlagBroadcast != 0 {
			ifc = i.Name
			break
		}
	}
	if ifc == "" {
		t.Skip("no broadcast interface on this machine for keepalived --config-test")
	}
	dir := t.TempDir()
	check := func(name, cfg string) error {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--config-test", "--use-file="+f).CombinedOutput()
		if err != nil {
			return &toolError{err, out}
		}
		return nil
	}
	for _, c := range []struct {
		s    *spec.ClusterSpec
		node string
	}{{reference(t), "lb-1"}, {reference(t), "lb-3"}, {localHA(t), "cp-2"}} {
		node := c.node
		p, err := For(c.s, node)
		if err != nil {
			t.Fatal(err)
		}
		cfg := string(keepalivedConfig(p, Host{LANInterface: ifc}))
		if err := check(node+".conf", cfg); err != nil {
			t.Fatalf("keepalived --config-test refuses %s's configuration: %v\n%s", node, err, cfg)
		}
		if err := check("broken.conf", strings.Replace(cfg, "\tstate BACKUP\n", "\tstate BACKUP_PLEASE\n", 1)); err == nil {
			t.Fatal("keepalived --config-test accepts a broken configuration: the check proves nothing")
		}
	}
}

type toolError struct {
	err error
	out []byte
}

func (e *toolError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(string(e.out)) }

// testCA is a self-signed CA certificate (PEM).
func testCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// With etcd nodes of their own, each control plane's plan names the
// control planes before it (its API server's first start waits for
// theirs); stacked ones and other roles name none.
func TestPlanControlPlanes(t *testing.T) {
	for _, c := range []struct {
		s    *spec.ClusterSpec
		node string
		want []string
	}{
		{reference(t), "cp-1", nil}, {reference(t), "cp-2", []string{"cp-1"}}, {reference(t), "cp-3", []string{"cp-1", "cp-2"}},
		{reference(t), "etcd-2", nil}, {reference(t), "w-1", nil}, {localHA(t), "cp-3", nil},
	} {
		p, err := For(c.s, c.node)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, b := range p.ControlPlanes {
			got = append(got, b.Name)
			if b.Address == "" {
				t.Errorf("%s: control plane %s without an address", c.node, b.Name)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: control planes %v, want %v", c.node, got, c.want)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", c.node, err)
		}
	}
	p, err := For(reference(t), "cp-3")
	if err != nil {
		t.Fatal(err)
	}
	p.ControlPlanes[0].Address = "cp-1.example"
	p.ControlPlanes[1].Name = "cp 2"
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "cp-1.example") || !strings.Contains(err.Error(), "cp 2") {
		t.Errorf("bad control planes: %v", err)
	}
}
