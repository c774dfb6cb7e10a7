package spec

import (
	"os"
	"strings"
	"testing"
)

// One unknown field and semantic mistakes: Check reports both kinds in one
// run, each once.
func TestCheckReportsStructuralAndSemantic(t *testing.T) {
	local, err := os.ReadFile("../../examples/local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := string(local)
	for _, r := range [][2]string{
		{"  name: local\n", "  name: local\n  colour: blue\n"},                                                                   // unknown field
		{"vmid: 101, address: 10.20.0.21", "vmid: 100, address: 10.99.0.21"},                                                     // duplicate VMID, address outside the LAN
		{"role: worker, vmid: 102", "role: wizard, vmid: 102"},                                                                   // unknown role
		{"cpus: 1, memoryMiB: 1024, diskGiB: 4}\n    - {name: w-2", "cpus: one, memoryMiB: 1024, diskGiB: 4}\n    - {name: w-2"}, // wrong kind
	} {
		if !strings.Contains(src, r[0]) {
			t.Fatalf("examples/local.yaml no longer has %q", r[0])
		}
		src = strings.Replace(src, r[0], r[1], 1)
	}
	s, ps := Check([]byte(src))
	if s != nil {
		t.Fatal("a spec with problems was returned")
	}
	got := ps.Error()
	for _, want := range []string{"metadata.colour", "vmid", "10.99.0.21", "wizard", "topology.nodes[1].cpus"} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
	// The wrong-kind value decoded as zero: no second problem for it.
	if n := strings.Count(got, "topology.nodes[1].cpus"); n != 1 {
		t.Errorf("topology.nodes[1].cpus reported %d times:\n%s", n, got)
	}
	for _, p := range ps {
		if p.Line == 0 {
			t.Errorf("problem %v has no line", p)
		}
	}
	// Parse alone still stops at the structure.
	if _, err := Parse([]byte(src)); err == nil || strings.Contains(err.Error(), "wizard") {
		t.Errorf("Parse: %v", err)
	}
}

func TestCheckValid(t *testing.T) {
	local, err := os.ReadFile("../../examples/local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, ps := Check(local)
	if len(ps) != 0 || s == nil || s.Metadata.Name != "local" {
		t.Fatalf("Check(local.yaml) = %v, %v", s, ps)
	}
}
