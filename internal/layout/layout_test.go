package layout

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/kubedos/kubedos/"

// rank orders the packages: an import must go to a strictly lower rank. A new
// package must be placed here before it can be imported, on purpose.
var rank = map[string]int{
	"internal/errdefs":                -1, // error classes: below everything that classifies
	"internal/boundedio":              -1, // reading input whole up to a limit: imports nothing of ours
	"examples":                        0,
	"internal/buildinfo":              0,
	"internal/spec":                   0,
	"internal/converge":               0, // generic: imports nothing of ours (checked below)
	"internal/layout":                 0,
	"internal/manifest":               0, // read by kubedosd too: imports nothing of ours
	"internal/efi":                    0, // the one EFI_GUID: imports nothing of ours (kubedos-init links it)
	"internal/upgrade":                2, // kubedosd's A/B slot writer
	"internal/earlyboot":              1, // kubedos-init: the initrd's PID 1
	"internal/lock":                   2, // adds each role's Kubernetes packages (kubeplan)
	"internal/kubeplan":               1, // what each node runs of Kubernetes, from the spec
	"internal/ociarchive":             0, // deterministic OCI image archives: imports nothing of ours
	"internal/modproxy":               0, // the Go module proxy files an offline build needs: imports nothing of ours
	"internal/tpmseal":                0, // sealing to the TPM under the signed PCR 11 policy: imports nothing of ours but boundedio
	"internal/sign":                   1,
	"internal/measure":                1,
	"internal/pki":                    1,
	"internal/kube":                   1, // a small Kubernetes REST client: imports nothing of ours above errdefs
	"internal/pki/pkitest":            2, // throwaway CAs and key directories for tests
	"internal/wg":                     2, // imports kubeplan: pod subnets ride the kubernetes plane
	"internal/firewall":               1, // the node's baseline nftables ruleset
	"internal/api":                    3, // wire types; carries internal/attest's structs
	"internal/api/apitest":            4, // fakes of the services over mTLS, for client tests
	"internal/plan":                   1,
	"internal/observability":          2, // Prometheus configuration, targets and alert rules from the spec
	"internal/observability/promtest": 3, // runs Debian's prometheus on loopback for tests
	"internal/dashboards":             3, // the grafana role's pages: charts from Prometheus's API; imports observability's job names
	"internal/pidfile":                1, // finds our daemons: no zombies, no recycled pids
	"internal/durable":                0, // crash-safe file writes: imports nothing of ours
	"internal/sparse":                 0, // a file's data by SEEK_DATA: imports nothing of ours
	"internal/etcdsnap":               1, // etcd snapshots taken and kept, checked: imports durable
	"internal/promtext":               0, // Prometheus text format and the /metrics server of kubedosd and the hub
	"internal/nodeid":                 0, // the SMBIOS node identity: encoder and decoder
	"internal/build":                  3,
	"internal/bundle":                 2, // the recovery bundle: reads manifests, signs with sign
	"internal/attest":                 2,
	"internal/target":                 3, // the Target interface and its types
	// The targets implement internal/target's interface.
	"internal/target/qemu":       4,
	"internal/target/proxmox":    4,
	"internal/target/targettest": 5, // the conformance suite
	"internal/nodeconsole":       4, // the node's tty1 status screen; imports api, wg and nodeid
	"internal/agent":             5, // kubedosd; imports api, attest and nodeconsole
	"internal/hub":               4,
	"internal/hubhost":           5, // runs a hub: kubedos hub serve, and kubedosd on the master
	"internal/steps":             4, // convergence steps over the api clients
	"internal/cluster":           6, // orchestration any front end reuses: up, down, upgrade, hand-over
	"internal/console":           7, // the web console: a front end over internal/cluster and the api clients
	"internal/cli":               8,
	"cmd":                        9,
	"bench":                      9, // benchmark helpers, like commands
	"scripts":                    9, // build helpers run with go run, like commands
	"kube":                       9, // the pinned Kubernetes build: a module of its own
	"coredns":                    9, // the pinned CoreDNS build: a module of its own

	// Test support over internal/attest: simulated nodes (tests and bench).
	"internal/attest/attesttest": 3,
}

// rankOf finds the rank of a package directory by its longest listed prefix,
// so internal/target/qemu ranks with internal/target.
func rankOf(dir string) (int, bool) {
	for d := dir; d != "." && d != ""; d = filepath.Dir(d) {
		if r, ok := rank[filepath.ToSlash(d)]; ok {
			return r, true
		}
	}
	return 0, false
}

func TestImportDirection(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		from, ok := rankOf(rel)
		if !ok {
			t.Errorf("%s: package %s has no rank in layout_test.go", path, rel)
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(p, module) {
				continue
			}
			target := strings.TrimPrefix(p, module)
			if strings.HasPrefix(rel, "internal/converge") {
				t.Errorf("%s: internal/converge must stay generic but imports %s", path, target)
			}
			to, ok := rankOf(target)
			switch {
			case !ok:
				t.Errorf("%s imports %s, which has no rank", path, target)
			case to >= from && !strings.HasPrefix(target, rel+"/"):
				t.Errorf("%s (rank %d) imports %s (rank %d): imports must point down", path, from, target, to)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
