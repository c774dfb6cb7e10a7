package hubhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/pki"
)

// FileKubeKeys holds the Kubernetes CAs and service-account key (JSON of
// pki.ReadKubeFiles), sealed to the TPM as the cluster CA key is. It is
// absent when the handoff carried none (a key directory made before the
// Kubernetes half of the ceremony): that hub issues no Kubernetes
// certificates.
const FileKubeKeys = "kubernetes.sealed"

// parseKube checks handed Kubernetes keys; none is not an error.
func parseKube(files map[string][]byte) (*pki.KubeCAs, error) {
	if len(files) == 0 {
		return nil, nil
	}
	for rel := range files {
		if !isKubeFile(rel) {
			return nil, fmt.Errorf("unexpected file %q", clipName(rel))
		}
	}
	return pki.ParseKubeFiles(files)
}

func isKubeFile(rel string) bool {
	for _, f := range append(append([]string{}, pki.KubePublicFiles...), pki.KubePrivateFiles...) {
		if f == rel {
			return true
		}
	}
	return false
}

func clipName(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// sealKube writes the handed Kubernetes keys sealed into dir, if any.
func (k *Keeper) sealKube(dir string, files map[string][]byte) error {
	if len(files) == 0 {
		return nil
	}
	raw, err := json.Marshal(files)
	if err != nil {
		return err
	}
	sealed, err := k.cfg.Sealer.Seal(raw)
	clear(raw)
	if err != nil {
		return fmt.Errorf("seal the Kubernetes keys: %w", err)
	}
	return durable.CreateFile(filepath.Join(dir, FileKubeKeys), sealed, 0o600)
}

// loadKube unseals the installed Kubernetes keys (nil if there are none).
func (k *Keeper) loadKube() (map[string][]byte, error) {
	sealed, err := os.ReadFile(filepath.Join(k.cfg.Dir, FileKubeKeys))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	raw, err := k.cfg.Sealer.Unseal(sealed)
	if err != nil {
		return nil, fmt.Errorf("unseal the Kubernetes keys: %w", err)
	}
	var files map[string][]byte
	if err := json.Unmarshal(raw, &files); err != nil {
		return nil, fmt.Errorf("%s: %w", FileKubeKeys, err)
	}
	return files, nil
}
