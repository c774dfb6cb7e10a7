package attesttest

import (
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/measure"
)

// Boot is a measured boot to give a TPM.
type Boot struct {
	// Measured are extended into the TPM's sha256 PCRs, in order
	// (EV_NO_ACTION events are logged only), as firmware and systemd-stub
	// would.
	Measured []Event
	// Served is the event log the node serves; Measured when nil. A test
	// makes it differ to have a node whose log lies.
	Served []Event
	// Words are systemd-pcrphase's words, extended into PCR 11 after the
	// boot and not logged (measure.Phase.Words: none for the stub phase,
	// "sysinit", "ready" for a running system).
	Words []string
}

// SimulatedNode is a booted machine: a TPM whose PCRs hold a boot, and the
// node side of enrollment over it.
type SimulatedNode struct {
	// TPM is the node's TPM channel, serialised (see Serialize). The node
	// owns it: Close closes it.
	TPM io.ReadWriteCloser
	// Prover is the node's Prover (its AK is made on the first Identity).
	Prover *attest.Prover
	// EventLog is the TCG log the Provers serve.
	EventLog []byte
}

// NewNode measures boot into tpm, a TPM 2.0 command channel whose PCRs 4, 7
// and 11 are still zero (just started, as after a reset), and returns the
// node with a Prover serving boot's log. It takes tpm over: Close closes it,
// and so does a failure here.
func NewNode(tpm io.ReadWriteCloser, boot Boot) (*SimulatedNode, error) {
	n, err := newNode(tpm, boot)
	if err != nil {
		tpm.Close()
		return nil, err
	}
	return n, nil
}

func newNode(tpm io.ReadWriteCloser, boot Boot) (*SimulatedNode, error) {
	served := boot.Served
	if served == nil {
		served = boot.Measured
	}
	log, err := EncodeTCGLog(served)
	if err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	rw := Serialize(tpm)
	if err := Extend(rw, boot.Measured); err != nil {
		return nil, err
	}
	if err := ExtendWords(rw, boot.Words...); err != nil {
		return nil, err
	}
	p, err := attest.NewProver(rw, log)
	if err != nil {
		return nil, err
	}
	return &SimulatedNode{TPM: rw, Prover: p, EventLog: log}, nil
}

// Predicted boots tpm as pred predicts, with PCR 11 at phase (its
// systemd-pcrphase words extended after the stub's sections): the node of
// a good build. The log holds PredictedEvents(pred).
func Predicted(tpm io.ReadWriteCloser, pred measure.Prediction, phase measure.Phase) (*SimulatedNode, error) {
	events, err := PredictedEvents(pred)
	if err != nil {
		tpm.Close()
		return nil, err
	}
	return NewNode(tpm, Boot{Measured: events, Words: phase.Words})
}

// Simulate starts the go-tpm-tools simulator with an EK derived from seed
// (another seed, another TPM) and boots it as pred predicts, with PCR 11 at
// phase. The simulator is one per process: Simulate blocks until the
// previous simulated node is closed.
func Simulate(seed int64, pred measure.Prediction, phase measure.Phase) (*SimulatedNode, error) {
	sim, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		return nil, fmt.Errorf("TPM simulator: %w", err)
	}
	return Predicted(sim, pred, phase)
}

// NewProver returns another Prover over the node's TPM and log, with its
// own AK (made on its first Identity). Closing it unloads its AK and leaves
// the TPM open. A TPM holds few loaded objects (three in the simulator, and
// making an AK needs one free): keep at most two Provers with an AK open.
func (n *SimulatedNode) NewProver() (*attest.Prover, error) {
	return attest.NewProver(NoClose(n.TPM), n.EventLog)
}

// Close closes the node's Prover and its TPM.
func (n *SimulatedNode) Close() error { return n.Prover.Close() }

// Extend extends every event but EV_NO_ACTION into rw's sha256 PCRs.
func Extend(rw io.ReadWriter, events []Event) error {
	for i, e := range events {
		if e.Type == measure.EvNoAction {
			continue
		}
		if err := tpm2.PCRExtend(rw, tpmutil.Handle(e.PCR), tpm2.AlgSHA256, e.Digest, ""); err != nil {
			return fmt.Errorf("extend event %d into PCR %d: %w", i, e.PCR, err)
		}
	}
	return nil
}

// ExtendWords extends PCR 11 with systemd-pcrphase's words (sha256 of each,
// no NUL; not logged).
func ExtendWords(rw io.ReadWriter, words ...string) error {
	for _, w := range words {
		s := sha256.Sum256([]byte(w))
		if err := tpm2.PCRExtend(rw, tpmutil.Handle(measure.PCRKernelImage), tpm2.AlgSHA256, s[:], ""); err != nil {
			return fmt.Errorf("extend PCR 11 with phase word %q: %w", w, err)
		}
	}
	return nil
}

// NoClose makes rw a channel whose Close does nothing, for a Prover that
// must not close a TPM others use.
func NoClose(rw io.ReadWriter) io.ReadWriteCloser { return noClose{rw} }

type noClose struct{ io.ReadWriter }

func (noClose) Close() error { return nil }

// Serialize makes rwc safe for several Provers at once: a TPM channel (the
// simulator, a socket) carries one command and its response at a time, and
// go-tpm writes a command then reads its whole response. The lock is taken
// by Write and released by the Read that follows (or a failed Write). An
// already serialised channel is returned as is.
func Serialize(rwc io.ReadWriteCloser) io.ReadWriteCloser {
	if s, ok := rwc.(*serialized); ok {
		return s
	}
	return &serialized{sem: make(chan struct{}, 1), rwc: rwc}
}

type serialized struct {
	sem chan struct{} // held from a command's Write to its response's Read
	rwc io.ReadWriteCloser
}

func (s *serialized) Write(b []byte) (int, error) {
	s.sem <- struct{}{}
	n, err := s.rwc.Write(b)
	if err != nil {
		s.release()
	}
	return n, err
}

func (s *serialized) Read(b []byte) (int, error) {
	defer s.release()
	return s.rwc.Read(b)
}

func (s *serialized) release() {
	select {
	case <-s.sem:
	default:
	}
}

func (s *serialized) Close() error { return s.rwc.Close() }
