package measure

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzEventLog drives the hub's path for an untrusted event log: parse,
// replay against PCRs, compare with a prediction. It must never panic.
func FuzzEventLog(f *testing.F) {
	p := loadProto(f)
	raw, err := os.ReadFile(filepath.Join("testdata", "proto", "eventlog.bin"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add(raw[:200])
	f.Add([]byte{})
	pred, err := Predict(p.inputs(f, p.file(f, "cmdline.txt"), p.file(f, "osrel.txt")))
	if err != nil {
		f.Fatal(err)
	}
	pcrs := p.pcrs(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		log, err := ParseEventLog(b)
		if err != nil {
			return
		}
		_ = log.Verify(pcrs)
		_, _ = Compare(pred, log.Events(), pcrs)
	})
}
