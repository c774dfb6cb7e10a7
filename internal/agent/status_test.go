package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeNode(t *testing.T, cmdline string, pcrs map[string]string, secureBoot byte) {
	t.Helper()
	dir := t.TempDir()
	CmdlinePath = filepath.Join(dir, "cmdline")
	SlotPath = filepath.Join(dir, "slot")
	_ = os.WriteFile(SlotPath, []byte("b\n"), 0o644)
	PCRDir = filepath.Join(dir, "pcrs")
	EventLogPath = filepath.Join(dir, "eventlog")
	SecureBootVar = filepath.Join(dir, "SecureBoot")
	_ = os.WriteFile(CmdlinePath, []byte(cmdline), 0o644)
	_ = os.MkdirAll(PCRDir, 0o755)
	for i, v := range pcrs {
		_ = os.WriteFile(filepath.Join(PCRDir, i), []byte(v+"\n"), 0o644)
	}
	_ = os.WriteFile(EventLogPath, []byte{1}, 0o644)
	_ = os.WriteFile(SecureBootVar, []byte{6, 0, 0, 0, secureBoot}, 0o644)
}

func TestReadStatus(t *testing.T) {
	h := strings.Repeat("ab", 32)
	cmd := "console=ttyS0 kubedos.build=0011 kubedos.roothash=" + h + " kubedos.salt=" + h + " kubedos.datablocks=9"
	pcr := strings.ToUpper(strings.Repeat("0f", 32))
	fakeNode(t, cmd, map[string]string{"4": pcr, "7": pcr, "11": pcr}, 1)
	st, err := ReadStatus([]int{4, 7, 11})
	if err != nil {
		t.Fatal(err)
	}
	if st.Build != "0011" || st.Slot != "b" || st.SecureBoot != "enabled" || !st.EventLog || st.PCRs["11"] != strings.ToLower(pcr) {
		t.Fatalf("status %+v", st)
	}
	line := StatusLine(st)
	var back Status
	if !strings.HasPrefix(line, StatusLinePrefix) || json.Unmarshal([]byte(strings.TrimPrefix(line, StatusLinePrefix)), &back) != nil || back.Build != "0011" {
		t.Fatalf("status line does not round-trip: %s", line)
	}
}

func TestReadStatusErrors(t *testing.T) {
	h := strings.Repeat("ab", 32)
	good := "kubedos.build=1 kubedos.roothash=" + h + " kubedos.salt=" + h + " kubedos.datablocks=9"
	fakeNode(t, good, map[string]string{"4": "zz"}, 0)
	if _, err := ReadStatus([]int{4}); err == nil || !strings.Contains(err.Error(), "PCR 4") {
		t.Errorf("bad PCR value accepted: %v", err)
	}
	if _, err := ReadStatus([]int{7}); err == nil || !strings.Contains(err.Error(), "PCR 7") {
		t.Errorf("missing PCR accepted: %v", err)
	}
	fakeNode(t, "console=ttyS0", nil, 0)
	if _, err := ReadStatus(nil); err == nil || !strings.Contains(err.Error(), "kubedos.roothash") {
		t.Errorf("cmdline without kubedos keys accepted: %v", err)
	}
}
