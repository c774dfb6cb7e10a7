package attesttest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kubedos/kubedos/internal/measure"
)

// RecordedBootDir is the recorded real boot (Debian OVMF, systemd-boot and
// systemd-stub 252, swtpm) that internal/measure tests against, relative to
// the repository root. Its eventlog.bin matches RecordedPrediction(dir, nil).
const RecordedBootDir = "internal/measure/testdata/proto"

// recordedBoot is the part of boot.json the prediction needs.
type recordedBoot struct {
	Authenticode map[string]measure.Digest `json:"authenticode"`
	Sections     map[string]measure.Digest `json:"sections"`
}

// RecordedPrediction predicts PCR 4, 7 and 11 with measure.Predict for the
// signed artifacts of the recorded boot in dir (RecordedBootDir), with the
// UKI's .cmdline replaced by cmdline when not nil (a UKI built for another
// node or build). The recorded log matches the prediction made with the
// recorded cmdline (internal/measure tests that).
func RecordedPrediction(dir string, cmdline []byte) (measure.Prediction, error) {
	files := map[string][]byte{}
	for _, name := range []string{"boot.json", "cmdline.txt", "db.esl", "db.cer", "osrel.txt", "PK.esl", "KEK.esl"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return measure.Prediction{}, fmt.Errorf("recorded boot: %w", err)
		}
		files[name] = b
	}
	var rb recordedBoot
	if err := json.Unmarshal(files["boot.json"], &rb); err != nil {
		return measure.Prediction{}, fmt.Errorf("recorded boot: %s: %w", filepath.Join(dir, "boot.json"), err)
	}
	if cmdline == nil {
		cmdline = files["cmdline.txt"]
	}
	db := files["db.esl"]
	auth, err := measure.FindSignatureData(db, files["db.cer"])
	if err != nil {
		return measure.Prediction{}, fmt.Errorf("recorded boot: %w", err)
	}
	secs := measure.UKISections{OSRel: files["osrel.txt"], Cmdline: cmdline}.Sections()
	secs = append(secs, measure.Section{Name: ".linux", Digest: rb.Sections[".linux"]}, measure.Section{Name: ".initrd", Digest: rb.Sections[".initrd"]})
	pred, err := measure.Predict(measure.Inputs{
		BootLoader:  rb.Authenticode["systemd-boot"],
		UKI:         rb.Authenticode["uki"],
		SecureBoot:  measure.SecureBootVars{PK: files["PK.esl"], KEK: files["KEK.esl"], DB: db},
		Authorities: [][]byte{auth, auth},
		Stub:        measure.Stub252, // the recorded boot is bookworm's
		Sections:    secs,
	})
	if err != nil {
		return measure.Prediction{}, fmt.Errorf("recorded boot: %w", err)
	}
	return pred, nil
}

// RecordedEvents returns the events of the recorded boot's real OVMF event
// log in dir (RecordedBootDir): 39 events, 7 KiB, PCRs 0–7 and 11.
func RecordedEvents(dir string) ([]Event, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "eventlog.bin"))
	if err != nil {
		return nil, fmt.Errorf("recorded boot: %w", err)
	}
	return ParseTCGLog(raw)
}
