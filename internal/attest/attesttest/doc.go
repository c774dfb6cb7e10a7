// Package attesttest gives tests and load generators a measured-boot node
// without hardware: it writes TCG2 event logs, extends a TPM's PCRs to
// match them, and hands back an attest.Prover over that TPM with the
// matching log. It is test support, not node code: nothing in an image
// imports it.
//
// The TPM is any TPM 2.0 command channel: the go-tpm-tools simulator
// (Simulate; one per process, a global of the MS reference implementation),
// or swtpm over its Unix socket (StartSWTPM), or a real /dev/tpmrm0 on a
// machine nobody cares about.
//
// A boot is a list of Events: those of a measure.Prediction
// (PredictedEvents, what a node booting the predicted image measures), or a
// recorded firmware log (ParseTCGLog of internal/measure/testdata/proto's
// OVMF log), or either tampered with. The measured and served lists may
// differ, to make a node whose log lies.
package attesttest
