package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/earlyboot"
	"github.com/kubedos/kubedos/internal/spec"
)

// Drift kinds.
const (
	DriftModified   = "modified"
	DriftMissing    = "missing"
	DriftUnexpected = "unexpected"
	DriftInvalid    = "invalid"
	DriftWritable   = "writable"
)

func (s nodeService) Drift(ctx context.Context, _ *api.DriftRequest) (*api.Drift, error) {
	items, err := s.n.checkDrift(ctx)
	if err != nil {
		return nil, err
	}
	return &api.Drift{Clean: len(items) == 0, Items: items}, nil
}

// CheckDrift lists every difference, in a stable order. The root is
// verity-protected, so drift lives in what is writable; it compares
//   - the applied configuration (ConfigFile) with the running system:
//     hostname and every kernel parameter it sets;
//   - the state partition's managed files with what they must be: the
//     identity (key 0600 and matching the certificate, the certificate
//     chaining to the cluster CA, the enrolled AK), the stored config and
//     revocation list decoding;
//   - the state directory with the files kubedosd manages: any other path
//     under it is unexpected;
//   - /etc with the read-only root: any writable mount at or under /etc (an
//     overlay, a bind mount, a root remounted rw) is reported.
func (n *NodeAPI) CheckDrift(ctx context.Context) ([]api.DriftItem, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	items := []api.DriftItem{}
	n.configMu.Lock()
	items = append(items, n.configDrift()...)
	n.configMu.Unlock()
	items = append(items, n.identityDrift()...)
	items = append(items, planeKeyDrift(filepath.Join(n.cfg.StateDir, PlanesDir))...)
	if _, err := LoadRevocationList(filepath.Join(n.cfg.StateDir, RevokedFile)); err != nil {
		items = append(items, api.DriftItem{Path: filepath.Join(n.cfg.StateDir, RevokedFile), Kind: DriftInvalid, Detail: err.Error()})
	}
	unexpected, err := n.unexpectedPaths()
	if err != nil {
		return nil, err
	}
	items = append(items, unexpected...)
	writable, err := n.writableEtc()
	if err != nil {
		return nil, err
	}
	return append(items, writable...), nil
}

// configDrift compares the applied configuration with the running system.
func (n *NodeAPI) configDrift() []api.DriftItem {
	raw, cfg, err := n.storedConfig()
	if err != nil {
		return []api.DriftItem{{Path: n.configPath(), Kind: DriftInvalid, Detail: err.Error()}}
	}
	if raw == nil {
		return nil // never configured: the image's settings stand
	}
	var items []api.DriftItem
	sys := n.cfg.System
	if cfg.Hostname != "" {
		cur, err := sys.Hostname()
		switch {
		case err != nil:
			items = append(items, api.DriftItem{Path: "hostname", Kind: DriftMissing, Expected: cfg.Hostname, Detail: err.Error()})
		case cur != cfg.Hostname:
			items = append(items, api.DriftItem{Path: "hostname", Kind: DriftModified, Expected: cfg.Hostname, Actual: cur})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Sysctls)) {
		want := strings.Join(strings.Fields(cfg.Sysctls[k]), " ")
		cur, err := sys.Sysctl(k)
		switch {
		case err != nil:
			items = append(items, api.DriftItem{Path: "sysctl:" + k, Kind: DriftMissing, Expected: want, Detail: err.Error()})
		case cur != want:
			items = append(items, api.DriftItem{Path: "sysctl:" + k, Kind: DriftModified, Expected: want, Actual: cur})
		}
	}
	return items
}

// identityDrift checks the node's identity files.
func (n *NodeAPI) identityDrift() []api.DriftItem {
	var items []api.DriftItem
	dir := n.cfg.IdentityDir
	missing := false
	for _, f := range []string{NodeCertFile, NodeKeyFile, AKFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			missing = true
			items = append(items, api.DriftItem{Path: filepath.Join(dir, f), Kind: DriftMissing, Detail: err.Error()})
		}
	}
	keyFile := filepath.Join(dir, NodeKeyFile)
	if st, err := os.Stat(keyFile); err == nil && st.Mode().Perm() != 0o600 {
		items = append(items, api.DriftItem{Path: keyFile, Kind: DriftModified, Expected: "mode 0600", Actual: fmt.Sprintf("mode %04o", st.Mode().Perm())})
	}
	certFile := filepath.Join(dir, NodeCertFile)
	if !missing {
		if _, err := loadIdentity(certFile, keyFile); err != nil {
			items = append(items, api.DriftItem{Path: keyFile, Kind: DriftModified, Detail: "key and certificate do not match: " + err.Error()})
		} else if _, err := n.nodeCertificate(); err != nil {
			items = append(items, api.DriftItem{Path: certFile, Kind: DriftModified, Detail: err.Error()})
		}
	}
	return items
}

// managedPaths are the paths kubedosd writes under the state directory.
func (n *NodeAPI) managedPaths() map[string]bool {
	id := filepath.Clean(n.cfg.IdentityDir)
	m := map[string]bool{
		filepath.Join(n.cfg.StateDir, ConfigFile):  true,
		filepath.Join(n.cfg.StateDir, RevokedFile): true,
		id:                              true,
		filepath.Join(id, NodeCertFile): true,
		filepath.Join(id, NodeKeyFile):  true,
		filepath.Join(id, NodeKeyFile+PrevKeySuffix): true,
		filepath.Join(id, AKFile):                    true,
		filepath.Join(n.cfg.StateDir, PlanesDir):     true,
		// Written by kubedosd too: the master's own hub address once it
		// took the hub over, the Day 0 identity, a failed boot check.
		filepath.Join(n.cfg.StateDir, filepath.Base(HubAddrFile)):            true,
		filepath.Join(n.cfg.StateDir, filepath.Base(earlyboot.IdentityFile)): true,
		filepath.Join(n.cfg.StateDir, BootCheckFile):                         true,
	}
	for _, p := range spec.Planes {
		m[filepath.Join(n.cfg.StateDir, PlanesDir, string(p)+".key")] = true
	}
	// The directories leading to them are expected too.
	for p := range maps.Clone(m) {
		for d := filepath.Dir(p); strings.HasPrefix(d, filepath.Clean(n.cfg.StateDir)+string(filepath.Separator)); d = filepath.Dir(d) {
			m[d] = true
		}
	}
	return m
}

// controllerTrees are the directories of the state directory a controller
// of this node's role writes as it converges (Kubernetes' configuration
// and certificates, the master's hub): theirs, not drift. Prometheus's
// alert on the master's drift found the hub's directory reported. (Prometheus's configuration is
// beside the state directory, which its user cannot enter.)
func (n *NodeAPI) controllerTrees() map[string]bool {
	m := map[string]bool{}
	if runsKubernetes(n.cfg.Role) {
		m[filepath.Join(n.cfg.StateDir, filepath.Dir(KubePKISubdir))] = true
	}
	if n.cfg.Role == string(spec.RoleMaster) {
		// The hub the master keeps (its state, the sealed CA key).
		m[filepath.Join(n.cfg.StateDir, filepath.Base(HubDir))] = true
	}
	return m
}

// unexpectedPaths walks the state directory for anything kubedosd does not
// manage; an unexpected directory is reported once, not entered.
func (n *NodeAPI) unexpectedPaths() ([]api.DriftItem, error) {
	root := filepath.Clean(n.cfg.StateDir)
	managed, trees := n.managedPaths(), n.controllerTrees()
	var items []api.DriftItem
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking (an atomic write's temporary file)
			}
			return err
		}
		if p == root || managed[p] {
			return nil
		}
		if target, ok := durable.TempTarget(p); ok && managed[target] && !d.IsDir() {
			return nil // one of its files being written
		}
		if trees[p] {
			return filepath.SkipDir // a controller's own directory
		}
		what := "file"
		switch {
		case d.IsDir():
			what = "directory"
		case d.Type()&fs.ModeSymlink != 0:
			what = "symbolic link"
		case !d.Type().IsRegular():
			what = "special file"
		}
		items = append(items, api.DriftItem{Path: p, Kind: DriftUnexpected, Detail: what + " not managed by kubedosd"})
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	return items, nil
}

// writableEtc reports /etc, or any mount under it, mounted read-write.
func (n *NodeAPI) writableEtc() ([]api.DriftItem, error) {
	data, err := os.ReadFile(n.cfg.MountInfo)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	mounts := parseMountInfo(data)
	var items []api.DriftItem
	// The mount that holds /etc: the last one (mounts stack) whose point
	// is /etc or one of its parents.
	var holder *mount
	for i := range mounts {
		m := &mounts[i]
		if m.Point == "/" || m.Point == "/etc" || strings.HasPrefix("/etc", strings.TrimSuffix(m.Point, "/")+"/") {
			holder = m
		}
		if strings.HasPrefix(m.Point, "/etc/") && slices.Contains(m.Options, "rw") {
			items = append(items, api.DriftItem{Path: m.Point, Kind: DriftWritable, Expected: "ro", Actual: "rw",
				Detail: fmt.Sprintf("%s mounted read-write under /etc", m.FSType)})
		}
	}
	if holder != nil && slices.Contains(holder.Options, "rw") {
		items = append([]api.DriftItem{{Path: "/etc", Kind: DriftWritable, Expected: "ro", Actual: "rw",
			Detail: fmt.Sprintf("/etc is writable: %s mounted read-write on %s", holder.FSType, holder.Point)}}, items...)
	}
	return items, nil
}
