package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/pki"
	"github.com/kubedos/kubedos/internal/sign"
)

// SealConfig is what sealing a cluster needs: the gate's configuration,
// the build the nodes run (its signed manifest) and the key directory
// (the artifact key signs the record; the CA certificates are recorded).
type SealConfig struct {
	Accept   AcceptConfig
	BuildDir string
	Keys     *sign.KeySet
	// Force replaces an acceptance record the build directory holds.
	Force bool
}

// SealResult is a sealed cluster: the gate's report, the record, and the
// audit entry that holds it.
type SealResult struct {
	Accept *AcceptResult        `json:"accept"`
	Record *manifest.Acceptance `json:"record,omitempty"`
	// RecordPath and SigPath are where the record and its signature were
	// written.
	RecordPath string      `json:"recordPath,omitempty"`
	SigPath    string      `json:"signaturePath,omitempty"`
	Sealed     *api.Sealed `json:"sealed,omitempty"`
}

// Seal runs the acceptance gate and, only when it accepts the cluster,
// makes the acceptance record (the checks, every node's name, role, EK
// hash and image from the hub, the build's manifest digest, the CA
// certificates' SHA-256, the hub's audit chain head and, for a cluster
// that runs etcd, the newest etcd snapshot the hub holds), signs it with the
// artifact key, has the hub append it to its audit chain (cluster.seal)
// and writes <build>/acceptance.json and acceptance.sig. A cluster the
// gate refuses gets nothing written and nothing sent: the error wraps
// ErrNotAccepted and the result carries the gate's report.
func Seal(ctx context.Context, cfg SealConfig) (*SealResult, error) {
	if cfg.Keys == nil || !cfg.Keys.Private {
		return nil, fmt.Errorf("%w: sealing signs the record with the artifact key: a key directory with its private halves is required", errdefs.ErrInvalid)
	}
	recPath := filepath.Join(cfg.BuildDir, manifest.AcceptanceFile)
	sigPath := filepath.Join(cfg.BuildDir, manifest.AcceptanceSigFile)
	// Checked before the gate runs, so a refusal costs nothing.
	m, manifestSum, err := signedManifest(cfg.BuildDir, cfg.Keys)
	if err != nil {
		return nil, err
	}
	if cfg.Accept.Spec != nil && m.Cluster != cfg.Accept.Spec.Metadata.Name {
		return nil, fmt.Errorf("%w: build %s is of cluster %s, the spec is %s", errdefs.ErrInvalid, m.BuildID, m.Cluster, cfg.Accept.Spec.Metadata.Name)
	}
	if !cfg.Force {
		for _, p := range []string{recPath, sigPath} {
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
				if err == nil {
					return nil, fmt.Errorf("%w: %s exists: the build is sealed already (--force seals it again)", errdefs.ErrAlreadyExists, p)
				}
				return nil, fmt.Errorf("%s: %w", p, err)
			}
		}
	}
	cas, err := caDigests(cfg.Keys)
	if err != nil {
		return nil, err
	}
	cfg.Accept.Builds = RoleBuilds(m)
	acc, err := Accept(ctx, cfg.Accept)
	res := &SealResult{Accept: acc}
	if err != nil {
		return res, err
	}
	hubConn, err := dial(cfg.Accept.ClientTLS, cfg.Accept.HubAddr, api.HubServerName)
	if err != nil {
		return res, err
	}
	defer hubConn.Close()
	hub := api.NewAdminClient(hubConn)
	cctx, cancel := context.WithTimeout(ctx, cfg.Accept.callTimeout())
	audit, err := hub.AuditHead(cctx)
	cancel()
	if err != nil {
		return res, fmt.Errorf("the hub's audit chain head: %w", err)
	}
	if !audit.ChainOK || audit.Head == nil {
		return res, fmt.Errorf("%w: the hub's audit chain does not verify: not sealed", errdefs.ErrPrecondition)
	}
	cctx, cancel = context.WithTimeout(ctx, cfg.Accept.callTimeout())
	etcd, err := sealEtcdSnapshot(cctx, hub, cfg.Accept.Spec)
	cancel()
	if err != nil {
		return res, err
	}
	rec := &manifest.Acceptance{APIVersion: "kubedos.io/v1alpha1", Kind: manifest.AcceptanceKind, Cluster: acc.Cluster,
		Time: acc.Started.UTC().Round(0), WallTimeMS: acc.WallTime.Milliseconds(), BuildID: m.BuildID, ManifestSHA256: manifestSum,
		Checks: acc.Checks, Allowed: acc.Allowed, Nodes: acc.Nodes, CAs: cas,
		AuditHead: manifest.AuditHead{Seq: audit.Head.Seq, Hash: audit.Head.Hash}, EtcdSnapshot: etcd}
	raw, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return res, err
	}
	raw = append(raw, '\n')
	key, err := cfg.Keys.SigningKey()
	if err != nil {
		return res, fmt.Errorf("signing the acceptance record needs the artifact key: %w", err)
	}
	sig, err := sign.SignBlob(key, raw)
	if err != nil {
		return res, err
	}
	cctx, cancel = context.WithTimeout(ctx, cfg.Accept.callTimeout())
	sealed, err := hub.Seal(cctx, raw, sig)
	cancel()
	if err != nil {
		return res, fmt.Errorf("the hub refused the seal: %w", err)
	}
	res.Record, res.Sealed = rec, sealed
	// The record first, its signature last: a signature on disk means the
	// record beside it is whole.
	if err := durable.WriteFile(recPath, raw, 0o644); err != nil {
		return res, fmt.Errorf("sealed at the hub (audit entry %d) but not written: %w", sealed.Seq, err)
	}
	if err := durable.WriteFile(sigPath, sig, 0o644); err != nil {
		return res, fmt.Errorf("sealed at the hub (audit entry %d) but not written: %w", sealed.Seq, err)
	}
	res.RecordPath, res.SigPath = recPath, sigPath
	return res, nil
}

// signedManifest reads the build's manifest, checks its signature with
// the artifact key of ks and returns it with its sha256.
func signedManifest(dir string, ks *sign.KeySet) (*manifest.Manifest, string, error) {
	mp := filepath.Join(dir, manifest.ManifestFile)
	m, raw, err := manifest.Read(mp)
	if err != nil {
		return nil, "", err
	}
	sp := filepath.Join(dir, manifest.SignatureFile)
	sig, err := os.ReadFile(sp)
	if err != nil {
		return nil, "", err
	}
	if err := sign.VerifyBlob(ks.SigningPub, raw, sig); err != nil {
		return nil, "", fmt.Errorf("%s: %w", sp, err)
	}
	sum := sha256.Sum256(raw)
	return m, hex.EncodeToString(sum[:]), nil
}

// caDigests is the SHA-256 of each CA certificate's DER: the cluster CA
// and, when the key directory has them, the Kubernetes CAs.
func caDigests(ks *sign.KeySet) (map[string]string, error) {
	sum := func(der []byte) string {
		s := sha256.Sum256(der)
		return hex.EncodeToString(s[:])
	}
	out := map[string]string{"cluster": sum(ks.CA.Raw)}
	for name, rel := range map[string]string{"kubernetes": pki.KubeCACertFile, "etcd": pki.EtcdCACertFile, "front-proxy": pki.FrontProxyCACertFile} {
		p := ks.Path(rel)
		raw, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		b, _ := pem.Decode(raw)
		if b == nil || b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: %s holds no PEM certificate", errdefs.ErrInvalid, p)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", errdefs.ErrInvalid, p, err)
		}
		out[name] = sum(b.Bytes)
	}
	return out, nil
}
