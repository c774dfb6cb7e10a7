package build

import (
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kubedos/kubedos/internal/manifest"
	"github.com/kubedos/kubedos/internal/measure"
	"github.com/kubedos/kubedos/internal/sign"
)

// Predict computes a role image's expected PCR 4, 7 and 11 (sha256 bank) for a
// boot through its signed systemd-boot and UKI under Secure Boot with the
// key set's PK, KEK and db enrolled (dbx empty), from the built files alone.
func Predict(roleDir string, ks *sign.KeySet) (measure.Prediction, error) {
	read := func(p string) ([]byte, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("predict PCRs: %w", err)
		}
		return b, nil
	}
	var in measure.Inputs
	boot, err := read(filepath.Join(roleDir, FileBootEFI))
	if err != nil {
		return measure.Prediction{}, err
	}
	uki, err := read(filepath.Join(roleDir, FileUKI))
	if err != nil {
		return measure.Prediction{}, err
	}
	if in.BootLoader, err = sign.AuthenticodeDigest(boot, crypto.SHA256); err != nil {
		return measure.Prediction{}, fmt.Errorf("predict PCR 4: systemd-boot: %w", err)
	}
	if in.UKI, err = sign.AuthenticodeDigest(uki, crypto.SHA256); err != nil {
		return measure.Prediction{}, fmt.Errorf("predict PCR 4: UKI: %w", err)
	}
	for _, v := range []struct {
		dst *[]byte
		rel string
	}{{&in.SecureBoot.PK, sign.FilePKESL}, {&in.SecureBoot.KEK, sign.FileKEKESL}, {&in.SecureBoot.DB, sign.FileDBESL}} {
		if *v.dst, err = read(ks.Path(v.rel)); err != nil {
			return measure.Prediction{}, err
		}
	}
	authority, err := measure.FindSignatureData(in.SecureBoot.DB, ks.DB.Raw)
	if err != nil {
		return measure.Prediction{}, fmt.Errorf("predict PCR 7: %w", err)
	}
	in.Authorities = [][]byte{authority}
	if in.Stub, in.Sections, err = measure.SectionsFromPE(bytes.NewReader(uki)); err != nil {
		return measure.Prediction{}, fmt.Errorf("predict PCR 11: %w", err)
	}
	return measure.Predict(in)
}

// PredictedPCRs decodes a manifest role's prediction.
func PredictedPCRs(rm manifest.RoleManifest) (measure.Prediction, error) {
	var p measure.Prediction
	if len(rm.PCRs) == 0 {
		return p, fmt.Errorf("role %s has no PCR prediction in its manifest", rm.RoleID)
	}
	if err := json.Unmarshal(rm.PCRs, &p); err != nil {
		return p, fmt.Errorf("role %s PCR prediction: %w", rm.RoleID, err)
	}
	return p, p.Validate()
}

// ComparePCRs checks PCR values a node reports (index → hex) against a
// role's prediction: PCR 4 and 7 exactly, PCR 11 at any quotable phase. It
// returns the phase PCR 11 matched and one line per mismatch.
func ComparePCRs(rm manifest.RoleManifest, got map[string]string) (phase string, mismatches []string, err error) {
	p, err := PredictedPCRs(rm)
	if err != nil {
		return "", nil, err
	}
	for _, v := range p.PCRs {
		idx := strconv.Itoa(v.Index)
		if v.Index == 11 {
			continue
		}
		if !strings.EqualFold(got[idx], v.Value.String()) {
			mismatches = append(mismatches, fmt.Sprintf("PCR %s: node has %s, manifest predicts %s", idx, got[idx], v.Value))
		}
	}
	var want []string
	for _, ph := range p.PCR11Phases {
		if strings.EqualFold(got["11"], ph.Value.String()) {
			phase = ph.Name
		}
		want = append(want, ph.Name+"="+ph.Value.String())
	}
	if phase == "" {
		mismatches = append(mismatches, fmt.Sprintf("PCR 11: node has %s, manifest predicts one of %s", got["11"], strings.Join(want, ", ")))
	}
	return phase, mismatches, nil
}
