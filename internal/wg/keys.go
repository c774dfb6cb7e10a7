package wg

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/spec"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// LoadOrCreateKeys returns the node's private key of every plane, kept in
// dir as <plane>.key (base64, mode 0600) and made on first use. A key is
// the node's identity on its plane for as long as its state partition
// lives; it never leaves the node, only its public half goes to the hub.
func LoadOrCreateKeys(dir string) (map[spec.Plane]wgtypes.Key, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("plane keys: %w", err)
	}
	out := map[spec.Plane]wgtypes.Key{}
	for _, p := range spec.Planes {
		path := filepath.Join(dir, string(p)+".key")
		raw, err := os.ReadFile(path)
		switch {
		case err == nil:
			k, err := wgtypes.ParseKey(strings.TrimSpace(string(raw)))
			if err != nil {
				return nil, fmt.Errorf("plane key %s: %w", path, err)
			}
			out[p] = k
		case errors.Is(err, os.ErrNotExist):
			k, err := wgtypes.GeneratePrivateKey()
			if err != nil {
				return nil, fmt.Errorf("plane key %s: %w", path, err)
			}
			if err := durable.WriteFile(path, []byte(k.String()+"\n"), 0o600); err != nil {
				return nil, fmt.Errorf("plane key: %w", err)
			}
			out[p] = k
		default:
			return nil, fmt.Errorf("plane key: %w", err)
		}
	}
	return out, nil
}

// PublicKeys is what a node registers with the hub: the public half of
// each plane key, base64.
func PublicKeys(keys map[spec.Plane]wgtypes.Key) map[spec.Plane]string {
	out := map[spec.Plane]string{}
	for p, k := range keys {
		out[p] = k.PublicKey().String()
	}
	return out
}

// CheckPublicKeys accepts a registration: exactly one valid public key for
// every plane the spec declares. Errors name the plane.
func CheckPublicKeys(s *spec.ClusterSpec, keys map[spec.Plane]string) error {
	var problems []string
	for _, p := range spec.Planes {
		if _, ok := s.Networking.Planes[p]; !ok {
			continue
		}
		k, ok := keys[p]
		if !ok {
			problems = append(problems, fmt.Sprintf("planes.%s: no public key", p))
			continue
		}
		parsed, err := wgtypes.ParseKey(k)
		if err != nil {
			problems = append(problems, fmt.Sprintf("planes.%s: %v", p, err))
		} else if parsed == (wgtypes.Key{}) {
			problems = append(problems, fmt.Sprintf("planes.%s: the all-zero key", p))
		}
	}
	for p := range keys {
		if _, ok := s.Networking.Planes[p]; !ok {
			problems = append(problems, fmt.Sprintf("planes.%s: not a plane of cluster %s", p, s.Metadata.Name))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
