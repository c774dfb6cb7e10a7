package console

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/build"
	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/wg"
)

// testPrediction is a valid PCR 4 and 7 prediction: each value the replay
// of its one event, seeded so two images differ.
func testPrediction(t *testing.T, seed string) (json.RawMessage, map[int]string) {
	t.Helper()
	p := measure.Prediction{Bank: "sha256"}
	want := map[int]string{}
	for _, pcr := range []int{4, 7} {
		d := sha256.Sum256([]byte(seed + string(rune('0'+pcr))))
		ev := []measure.Event{{PCR: pcr, Type: "EV_EFI_BOOT_SERVICES_APPLICATION", Digest: d[:], Description: "test"}}
		v, err := measure.Replay(ev)
		if err != nil {
			t.Fatal(err)
		}
		p.PCRs = append(p.PCRs, measure.PCRPrediction{Index: pcr, Value: v, Events: ev})
		want[pcr] = hex.EncodeToString(v)
	}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return raw, want
}

// testSBOM has three components: MIT, an expression, and none named.
const testSBOM = `{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[
{"type":"library","name":"a","version":"1","licenses":[{"license":{"id":"MIT"}}]},
{"type":"library","name":"b","version":"1","licenses":[{"expression":"GPL-2.0-only OR MIT"}]},
{"type":"library","name":"c","version":"1"}]}`

const testProvenance = `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"manifest.json","digest":{"sha256":"00"}},{"name":"roles/worker/kubedos.efi","digest":{"sha256":"00"}}],
"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"https://kubedos.io/build/test","resolvedDependencies":[{"name":"a"},{"name":"b"},{"name":"c"}]},
"runDetails":{"builder":{"id":"https://kubedos.io/builder/test-bench"},"metadata":{"invocationId":"inv-1"}}}}`

// testBuild writes a signed build directory as kubedos build lays it out:
// images maps a role to its image's id; every file is listed with its
// digest in the manifest. It returns the directory and each image's
// predicted PCR values.
func testBuild(t *testing.T, key ed25519.PrivateKey, id string, images map[string]string) (string, map[string]map[int]string) {
	t.Helper()
	dir := t.TempDir()
	m := manifest.Manifest{APIVersion: "kubedos.io/v1alpha1", Kind: "BuildManifest", Cluster: "test", BuildID: id,
		Source: manifest.Source{Revision: "rev-" + id}, Roles: map[string]manifest.RoleManifest{}}
	preds := map[string]map[int]string{}
	files := map[string][]byte{manifest.ProvenanceRel: []byte(testProvenance)}
	for role, img := range images {
		pcrs, want := testPrediction(t, img)
		preds[img] = want
		m.Roles[role] = manifest.RoleManifest{RoleID: img, Packages: 42, PCRs: pcrs}
		files[manifest.RoleFile(role, build.FileSBOM)] = []byte(testSBOM)
		for _, part := range []string{manifest.FileRoot, manifest.FileVerity, manifest.FileUKI} {
			files[manifest.RoleFile(role, part)] = []byte(img + "/" + part + " payload")
		}
	}
	for rel, data := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		m.Files = append(m.Files, manifest.FileEntry{Path: rel, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))})
	}
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := sign.SignBlob(key, raw)
	if err != nil {
		t.Fatal(err)
	}
	for f, data := range map[string][]byte{manifest.ManifestFile: raw, manifest.SignatureFile: sig} {
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, preds
}

// fakeNode is a node API: its services, a restart, and an upgrade that
// "reboots" into the build at once. It records who called.
type fakeNode struct {
	api.NodeServer // nil: the methods not here are not called

	// name is the node it is (empty: w-3); gate, set, holds each
	// upgrade until it is closed.
	name string
	gate chan struct{}

	mu       sync.Mutex
	build    string
	units    []api.Unit
	restarts []string // "unit by CN"
	received int64    // upgrade bytes
	upgrades []string // "image by CN"
}

func caller(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "?"
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
		return ti.State.PeerCertificates[0].Subject.CommonName
	}
	return "?"
}

func (f *fakeNode) nodeName() string {
	if f.name == "" {
		return "w-3"
	}
	return f.name
}

func (f *fakeNode) Version(context.Context, *api.NodeVersionRequest) (*api.NodeVersion, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &api.NodeVersion{Node: f.nodeName(), Role: "worker", BuildID: f.build, Boot: &api.BootState{Entry: "kubedos-" + f.build + ".efi"}}, nil
}

func (f *fakeNode) Services(context.Context, *api.ServicesRequest) (*api.Services, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &api.Services{Units: append([]api.Unit(nil), f.units...)}, nil
}

func (f *fakeNode) Health(context.Context, *api.HealthRequest) (*api.Health, error) {
	return &api.Health{Healthy: false, SystemState: "degraded", FailedUnits: []string{"x<y>.service"},
		Checks: []api.HealthCheck{{Name: "enrolled", OK: true, Critical: true}, {Name: "units", OK: false, Critical: true, Detail: "x<y>.service failed"}}}, nil
}

func (f *fakeNode) Planes(context.Context, *api.PlanesRequest) (*api.Planes, error) {
	return &api.Planes{Joined: time.Now().Add(-time.Minute), Interfaces: []wg.Status{{Plane: "control", Interface: "wg-control", Up: true,
		Addresses: []string{"10.77.0.23/24"}, Peers: []wg.PeerStatus{{Name: "master", Endpoint: "10.20.0.10:51820", LatestHandshake: time.Now().Add(-5 * time.Second)}, {Name: "w-1"}}}}}, nil
}

func (f *fakeNode) Drift(context.Context, *api.DriftRequest) (*api.Drift, error) {
	return &api.Drift{Items: []api.DriftItem{{Path: "/etc/hostname", Kind: "modified", Expected: "w-3", Actual: "<evil>"}}}, nil
}

func (f *fakeNode) RestartService(ctx context.Context, r *api.RestartServiceRequest) (*api.Unit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restarts = append(f.restarts, r.Name+" by "+caller(ctx))
	return &api.Unit{Name: r.Name, Load: "loaded", Active: "active", Sub: "running"}, nil
}

func (f *fakeNode) Upgrade(s api.UpgradeStream) (*api.UpgradeResult, error) {
	first, err := s.Recv()
	if err != nil {
		return nil, err
	}
	m, err := manifest.Parse(first.Manifest)
	if err != nil {
		return nil, err
	}
	var n int64
	for {
		c, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		n += int64(len(c.Data))
	}
	img := m.Roles["worker"].RoleID
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-s.Context().Done():
			return nil, s.Context().Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	from := f.build
	f.received += n
	f.upgrades = append(f.upgrades, img+" by "+caller(s.Context()))
	f.build = img // the reboot, at once
	return &api.UpgradeResult{Node: f.nodeName(), FromBuild: from, Build: img, Slot: "b", Entry: "kubedos-" + img + ".efi", Bytes: n, Rebooting: first.Reboot}, nil
}
