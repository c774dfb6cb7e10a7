package agent

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kubedos/kubedos/internal/earlyboot"
)

// Status is what a node reports about its boot.
type Status struct {
	Build      string            `json:"build"`
	Slot       string            `json:"slot"`
	RootHash   string            `json:"rootHash"`
	PCRs       map[string]string `json:"pcrs"` // index → sha256 hex
	EventLog   bool              `json:"eventLog"`
	SecureBoot string            `json:"secureBoot"`
}

// Paths the status is read from; variables so tests can point at a fake sysfs.
var (
	CmdlinePath  = "/proc/cmdline"
	SlotPath     = earlyboot.BootSlotFile
	PCRDir       = "/sys/class/tpm/tpm0/pcr-sha256"
	EventLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"
	// The SecureBoot EFI variable: 4 attribute bytes, then one byte 0 or 1.
	SecureBootVar = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
)

// ReadStatus gathers the node's boot status. PCRs that cannot be read are
// an error: a node without a readable TPM cannot attest.
func ReadStatus(pcrs []int) (Status, error) {
	raw, err := os.ReadFile(CmdlinePath)
	if err != nil {
		return Status{}, fmt.Errorf("read %s: %w", CmdlinePath, err)
	}
	cfg, err := earlyboot.ParseCmdline(string(raw))
	if err != nil {
		return Status{}, err
	}
	slot, err := os.ReadFile(SlotPath)
	if err != nil {
		return Status{}, fmt.Errorf("read the booted slot (kubedos-init writes it): %w", err)
	}
	st := Status{Build: cfg.Build, Slot: strings.TrimSpace(string(slot)), RootHash: cfg.RootHash, PCRs: map[string]string{}}
	for _, i := range pcrs {
		p := filepath.Join(PCRDir, strconv.Itoa(i))
		b, err := os.ReadFile(p)
		if err != nil {
			return st, fmt.Errorf("read PCR %d: %w", i, err)
		}
		v := strings.ToLower(strings.TrimSpace(string(b)))
		if _, err := hex.DecodeString(v); err != nil || len(v) != 64 {
			return st, fmt.Errorf("PCR %d in %s is not a sha256 value: %q", i, p, v)
		}
		st.PCRs[strconv.Itoa(i)] = v
	}
	if _, err := os.Stat(EventLogPath); err == nil {
		st.EventLog = true
	}
	st.SecureBoot = "unknown"
	if b, err := os.ReadFile(SecureBootVar); err == nil && len(b) == 5 {
		st.SecureBoot = map[byte]string{0: "disabled", 1: "enabled"}[b[4]]
	}
	return st, nil
}

// StatusLinePrefix marks the status line on the console, for tests and log scrapers.
const StatusLinePrefix = "KUBEDOSD-STATUS "

// StatusLine renders st as one console line.
func StatusLine(st Status) string {
	b, _ := json.Marshal(st)
	return StatusLinePrefix + string(b)
}
