package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
)

func (n *NodeAPI) configPath() string { return filepath.Join(n.cfg.StateDir, ConfigFile) }

// storedConfig reads the applied configuration: its bytes (nil when none
// was ever applied) and the decoded document (nil if it does not decode).
func (n *NodeAPI) storedConfig() ([]byte, *NodeConfig, error) {
	raw, err := os.ReadFile(n.configPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, EmptyNodeConfig(), nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", n.configPath(), err)
	}
	cfg, err := DecodeNodeConfig(n.configPath(), raw)
	return raw, cfg, err
}

func (s nodeService) ConfigGet(context.Context, *api.ConfigGetRequest) (*api.NodeConfigDoc, error) {
	s.n.configMu.Lock()
	defer s.n.configMu.Unlock()
	raw, cfg, err := s.n.storedConfig()
	if err != nil {
		if raw == nil {
			return nil, err
		}
		// A stored document that no longer decodes is shown as it is; drift
		// reports it.
		return &api.NodeConfigDoc{Present: true, Document: string(raw), SHA256: sha256Hex(raw)}, nil
	}
	doc := cfg.Canonical()
	return &api.NodeConfigDoc{Present: raw != nil, Document: string(doc), SHA256: sha256Hex(doc)}, nil
}

func (s nodeService) ConfigApply(ctx context.Context, r *api.ConfigApplyRequest) (*api.ConfigApplied, error) {
	n := s.n
	cfg, err := DecodeNodeConfig("config", []byte(r.Document))
	if err != nil {
		return nil, err
	}
	if err := n.checkOnNode(cfg); err != nil {
		return nil, err
	}
	n.configMu.Lock()
	defer n.configMu.Unlock()
	raw, _, err := n.storedConfig()
	if raw == nil && err != nil {
		return nil, err
	}
	if raw == nil {
		raw = []byte{}
	}
	doc := cfg.Canonical()
	out := &api.ConfigApplied{DryRun: r.DryRun, Changed: !bytes.Equal(raw, doc), SHA256: sha256Hex(doc),
		Diff: unifiedDiff(ConfigFile+" (applied)", ConfigFile+" (requested)", raw, doc)}
	if r.DryRun {
		return out, nil
	}
	if out.Changed {
		if err := durable.WriteFile(n.configPath(), doc, 0o644); err != nil {
			return nil, fmt.Errorf("store %s: %w", n.configPath(), err)
		}
	}
	if err := n.applyConfig(cfg); err != nil {
		return nil, fmt.Errorf("configuration stored in %s, but applying it failed (kubedos node drift shows what differs): %w", n.configPath(), err)
	}
	return out, nil
}

// checkOnNode checks what only the node can: every kernel parameter
// exists here. It reads, never writes.
func (n *NodeAPI) checkOnNode(cfg *NodeConfig) error {
	cerr := &ConfigError{Source: "config"}
	for _, k := range slices.Sorted(maps.Keys(cfg.Sysctls)) {
		if _, err := n.cfg.System.Sysctl(k); errors.Is(err, ErrNotFound) {
			cerr.Problems = append(cerr.Problems, ConfigProblem{Field: "sysctls." + k, Message: "no such kernel parameter on this node"})
		} else if err != nil {
			return err
		}
	}
	if len(cerr.Problems) > 0 {
		return cerr
	}
	return nil
}

// applyConfig makes the running system match cfg: hostname, then kernel
// parameters in name order; every failure is reported.
func (n *NodeAPI) applyConfig(cfg *NodeConfig) error {
	var errs []error
	sys := n.cfg.System
	if cfg.Hostname != "" {
		if cur, err := sys.Hostname(); err != nil || cur != cfg.Hostname {
			if err := sys.SetHostname(cfg.Hostname); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Sysctls)) {
		if err := sys.SetSysctl(k, cfg.Sysctls[k]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ApplyStoredConfig applies the configuration on the state partition, as
// kubedosd does at start (the root and /etc are read-only: the stored
// document is the node's configuration).
func (n *NodeAPI) ApplyStoredConfig() error {
	n.configMu.Lock()
	defer n.configMu.Unlock()
	raw, cfg, err := n.storedConfig()
	if err != nil {
		return err
	}
	if raw == nil {
		return nil
	}
	return n.applyConfig(cfg)
}
