package earlyboot

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gptFile makes a small GPT disk with sfdisk, the oracle for our writer.
func gptFile(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("sfdisk not installed (scripts/setup.sh installs it)")
	}
	path := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 8<<20); err != nil {
		t.Fatal(err)
	}
	script := "label: gpt\nunit: sectors\nfirst-lba: 2048\n"
	for _, l := range []string{"esp", "root-a", "verity-a", "root-b", "verity-b", "state"} {
		script += "size=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=" + l + "\n"
	}
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", "--quiet", path)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	return path
}

func TestSetPartUUIDsAndFindSlot(t *testing.T) {
	path := gptFile(t)
	hashA, hashB := strings.Repeat("0a", 32), strings.Repeat("1b", 16)+strings.Repeat("2c", 16)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := SetPartUUIDs(f, map[string]string{"root-a": RootPartUUID(hashA), "verity-a": VerityPartUUID(hashA),
		"root-b": RootPartUUID(hashB), "verity-b": VerityPartUUID(hashB)}); err != nil {
		t.Fatal(err)
	}
	// sfdisk checks both headers' CRCs and the entries: a bad write fails here.
	if out, err := exec.Command("sfdisk", "--verify", path).CombinedOutput(); err != nil || strings.Contains(string(out), "corrupt") {
		t.Fatalf("sfdisk --verify: %v\n%s", err, out)
	}
	out, err := exec.Command("sfdisk", "--json", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var table struct {
		PartitionTable struct {
			Partitions []struct{ Name, UUID string } `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &table); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range table.PartitionTable.Partitions {
		got[p.Name] = strings.ToLower(p.UUID)
	}
	if got["root-b"] != RootPartUUID(hashB) || got["verity-a"] != VerityPartUUID(hashA) {
		t.Errorf("sfdisk reads root-b %s verity-a %s; want %s %s", got["root-b"], got["verity-a"], RootPartUUID(hashB), VerityPartUUID(hashA))
	}
	parts, err := ReadGPT(f)
	if err != nil {
		t.Fatal(err)
	}
	for hash, want := range map[string]string{hashA: "a", hashB: "b"} {
		if slot, err := FindSlot(parts, hash); err != nil || slot != want {
			t.Errorf("FindSlot(%s…) = %q, %v; want %s", hash[:8], slot, err, want)
		}
	}
	if _, err := FindSlot(parts, strings.Repeat("ff", 32)); err == nil || !strings.Contains(err.Error(), "no slot holds") {
		t.Errorf("unknown hash: %v", err)
	}
	if err := SetPartUUIDs(f, map[string]string{"root-c": RootPartUUID(hashA)}); err == nil || !strings.Contains(err.Error(), `"root-c"`) {
		t.Errorf("unknown label: %v", err)
	}
	if p, ok := PartitionByLabel(parts, "root-b"); !ok || p.Size() != 2048*512 || p.Offset() <= 0 {
		t.Errorf("root-b extent %+v", p)
	}
}

func TestSetPartUUIDsRefusesDamagedTable(t *testing.T) {
	path := gptFile(t)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0xff}, 2*512+100); err != nil { // inside the primary entries
		t.Fatal(err)
	}
	if err := SetPartUUIDs(f, map[string]string{"root-a": RootPartUUID(strings.Repeat("0a", 32))}); err == nil || !strings.Contains(err.Error(), "CRC") {
		t.Errorf("damaged entries accepted: %v", err)
	}
}

func TestSetPartUUIDsWritesNothingOnError(t *testing.T) {
	path := gptFile(t)
	before, _ := os.ReadFile(path)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := SetPartUUIDs(f, map[string]string{"root-a": "not-a-guid"}); err == nil {
		t.Fatal("malformed GUID accepted")
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("a refused rewrite changed the disk")
	}
}
