package measure

import (
	"bytes"
	"fmt"
)

// Inputs are the artifact facts a prediction is made from.
type Inputs struct {
	// BootLoader and UKI are the Authenticode sha256 digests of the signed
	// systemd-boot (EFI/BOOT/BOOTX64.EFI) and of the UKI it starts, as
	// computed by internal/sign.
	BootLoader, UKI []byte
	// SecureBoot holds the enrolled variables.
	SecureBoot SecureBootVars
	// Authorities are the db entries (EFI_SIGNATURE_DATA) that verify
	// systemd-boot and the UKI, in that order; one entry when both are
	// signed by the same db key. See FindSignatureData.
	Authorities [][]byte
	// Stub is the systemd-stub release the UKI is built on and Sections
	// its measured sections, both from SectionsFromPE (or Stub252 and
	// UKISections.Sections).
	Stub     Stub
	Sections []Section
}

// Prediction is the expected sha256-bank PCR policy of a node booting one
// UKI, as stored in the build manifest.
type Prediction struct {
	Bank string          `json:"bank"`
	PCRs []PCRPrediction `json:"pcrs"`
	// PCR11Phases are the values PCR 11 takes at each quotable boot phase,
	// in boot order; the first is the stub's value (PCRs' PCR 11 value).
	PCR11Phases []PhaseValue `json:"pcr11Phases"`
}

// PCRPrediction is the predicted final value of one PCR and the events that
// produce it, in log order.
type PCRPrediction struct {
	Index  int     `json:"index"`
	Value  Digest  `json:"value"`
	Events []Event `json:"events"`
}

// PhaseValue is PCR 11 at one boot phase.
type PhaseValue struct {
	Phase
	Value Digest `json:"value"`
}

// Predict computes the PCR 4, 7 and 11 prediction for in, with PCR 11 at each
// of BootPhases.
func Predict(in Inputs) (Prediction, error) {
	pcr4, err := PredictPCR4(in.BootLoader, in.UKI)
	if err != nil {
		return Prediction{}, err
	}
	pcr4[2].Description = bootServicesApplicationPrefix + ": systemd-boot"
	pcr4[3].Description = bootServicesApplicationPrefix + ": UKI"
	pcr7, err := PredictPCR7(in.SecureBoot, in.Authorities...)
	if err != nil {
		return Prediction{}, err
	}
	pcr11, err := PredictPCR11(in.Stub, in.Sections)
	if err != nil {
		return Prediction{}, err
	}
	p := Prediction{Bank: "sha256"}
	for _, evs := range [][]Event{pcr4, pcr7, pcr11} {
		v, err := Replay(evs)
		if err != nil {
			return Prediction{}, err
		}
		p.PCRs = append(p.PCRs, PCRPrediction{Index: evs[0].PCR, Value: v, Events: evs})
	}
	stub := p.PCRs[2].Value
	for _, ph := range BootPhases {
		p.PCR11Phases = append(p.PCR11Phases, PhaseValue{Phase: ph, Value: PCR11AtPhase(stub, ph.Words...)})
	}
	return p, nil
}

// PCR returns the prediction for PCR index.
func (p Prediction) PCR(index int) (PCRPrediction, bool) {
	for _, c := range p.PCRs {
		if c.Index == index {
			return c, true
		}
	}
	return PCRPrediction{}, false
}

// Validate checks that the prediction is self-consistent: known bank, each
// PCR's value is the replay of its events, and the PCR 11 phase values follow
// from the PCR 11 value. A prediction read from a manifest should pass
// before it is trusted as policy.
func (p Prediction) Validate() error {
	if p.Bank != "sha256" {
		return fmt.Errorf("%w: prediction bank %q, want sha256", ErrInput, p.Bank)
	}
	if len(p.PCRs) == 0 {
		return fmt.Errorf("%w: prediction has no PCRs", ErrInput)
	}
	seen := map[int]bool{}
	for _, c := range p.PCRs {
		if seen[c.Index] {
			return fmt.Errorf("%w: prediction lists PCR %d twice", ErrInput, c.Index)
		}
		seen[c.Index] = true
		for i, e := range c.Events {
			if e.PCR != c.Index {
				return fmt.Errorf("%w: prediction PCR %d event %d is for PCR %d", ErrInput, c.Index, i, e.PCR)
			}
		}
		v, err := Replay(c.Events)
		if err != nil {
			return fmt.Errorf("prediction PCR %d: %w", c.Index, err)
		}
		if !bytes.Equal(v, c.Value) {
			return fmt.Errorf("%w: prediction PCR %d value %s is not the replay of its events (%x)", ErrInput, c.Index, c.Value, v)
		}
	}
	if len(p.PCR11Phases) > 0 {
		c, ok := p.PCR(PCRKernelImage)
		if !ok {
			return fmt.Errorf("%w: prediction has PCR 11 phases but no PCR 11", ErrInput)
		}
		for _, ph := range p.PCR11Phases {
			if want := PCR11AtPhase(c.Value, ph.Words...); !bytes.Equal(want, ph.Value) {
				return fmt.Errorf("%w: prediction PCR 11 phase %q value %s, want %x", ErrInput, ph.Name, ph.Value, want)
			}
		}
	}
	return nil
}
