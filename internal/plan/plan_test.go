package plan

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/examples"
	"github.com/kubedos/kubedos/internal/spec"
)

var update = flag.Bool("update", false, "rewrite golden files")

func load(t *testing.T, data []byte) *spec.ClusterSpec {
	t.Helper()
	doc, err := spec.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	s := spec.WithDefaults(doc.Spec)
	if ps := spec.Validate(s); len(ps) > 0 {
		t.Fatal(ps)
	}
	return s
}

func TestGolden(t *testing.T) {
	for name, data := range map[string][]byte{"local": examples.Local, "reference": examples.Reference} {
		s := load(t, data)
		g, err := Build(s)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := NewDocument(s.Metadata.Name, g)
		if err != nil {
			t.Fatal(err)
		}
		for format, write := range map[string]func(*bytes.Buffer) error{
			"txt":  func(b *bytes.Buffer) error { return doc.WriteText(b) },
			"json": func(b *bytes.Buffer) error { return doc.WriteJSON(b) },
			"dot":  func(b *bytes.Buffer) error { return doc.WriteDot(b) },
		} {
			t.Run(name+"."+format, func(t *testing.T) {
				var got bytes.Buffer
				if err := write(&got); err != nil {
					t.Fatal(err)
				}
				path := filepath.Join("testdata", name+".plan."+format)
				if *update {
					if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./internal/plan -update to create)", err)
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Fatalf("plan output differs from %s; run with -update and review the diff", path)
				}
			})
		}
	}
}

// TestReferenceShape checks the DAG's meaning, independent of the golden text.
func TestReferenceShape(t *testing.T) {
	s := load(t, examples.Reference)
	g, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	deps := map[string][]string{}
	phase := map[string]string{}
	for _, st := range g.Steps() {
		deps[st.ID], phase[st.ID] = st.Deps, st.Phase
	}
	// Every node has an attestation gate, and nothing of a node happens before it.
	for _, n := range s.Topology.Nodes {
		if phase[AttestID(n.Name)] != PhaseAttest {
			t.Errorf("no attestation gate for %s", n.Name)
		}
		if !reaches(deps, EnrollID(n.Name), AttestID(n.Name)) {
			t.Errorf("enroll/%s does not depend on its attestation", n.Name)
		}
	}
	checks := []struct{ step, needs string }{
		{ConvergeID(spec.RoleControlPlane), ConvergeID(spec.RoleEtcd)},
		{ConvergeID(spec.RoleControlPlane), ConvergeID(spec.RoleLoadBalancer)},
		{ConvergeID(spec.RoleWorker), ConvergeID(spec.RoleControlPlane)},
		{WorkloadKubernetes, EnrollID("w-3")},
		{Seal, Acceptance},
		{Seal, AttestID("lb-2")},
		{PlaneID(spec.PlaneKubernetes, "cp-2"), AttestID("master")},
		// A node joins the planes with the certificate enrollment issued.
		{PlaneID(spec.PlaneControl, "w-1"), EnrollID("w-1")},
		{HubPlaneID(spec.PlaneObservability), EnrollID("master")},
		{ConvergeID(spec.RoleWorker), PlaneID(spec.PlaneKubernetes, "w-2")},
	}
	for _, c := range checks {
		if !reaches(deps, c.step, c.needs) {
			t.Errorf("%s does not depend on %s", c.step, c.needs)
		}
	}
	if reaches(deps, AttestID("w-1"), EnrollID("master")) {
		t.Error("attestation depends on enrollment: the gate must come first")
	}
	for _, n := range s.Topology.Nodes {
		for _, p := range spec.Planes {
			if reaches(deps, EnrollID(n.Name), PlaneID(p, n.Name)) || reaches(deps, EnrollID(n.Name), HubPlaneID(p)) {
				t.Errorf("enroll/%s waits for plane %s: the planes need its certificate", n.Name, p)
			}
		}
	}
}

func TestOptionalWorkloads(t *testing.T) {
	s := load(t, examples.Reference)
	s.OS.Components = append(s.OS.Components, "contrib")
	s.Storage.ZFS.Enabled = true
	s.Storage.Ceph = spec.Ceph{Enabled: true, Plane: spec.PlaneKubernetes, Nodes: []string{"storage"}}
	g, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, st := range g.Steps() {
		ids = append(ids, st.ID)
	}
	for _, want := range []string{WorkloadZFS, WorkloadCeph} {
		if !slices.Contains(ids, want) {
			t.Errorf("no %s step in %s", want, strings.Join(ids, " "))
		}
	}
}

func reaches(deps map[string][]string, from, to string) bool {
	seen := map[string]bool{}
	var walk func(string) bool
	walk = func(id string) bool {
		if id == to {
			return true
		}
		if seen[id] {
			return false
		}
		seen[id] = true
		for _, d := range deps[id] {
			if walk(d) {
				return true
			}
		}
		return false
	}
	return walk(from)
}
