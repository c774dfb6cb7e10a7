package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/kubedos/kubedos/internal/measure"
)

// tpmGeneratedValue is TPM_GENERATED_VALUE, the magic that starts every
// TPMS_ATTEST a TPM makes (and that TPM2_Sign refuses to sign for restricted
// keys), so a restricted AK's signature over it means the TPM made it.
const tpmGeneratedValue = 0xff544347

// VerifyInput is what the hub holds for one verification.
type VerifyInput struct {
	// AKPublic is the enrolled AK's TPMT_PUBLIC (Identity.AK.Public, after
	// activation).
	AKPublic []byte
	// Nonce is the nonce the hub issued for this quote. Freshness and single
	// use are the hub's job.
	Nonce []byte
	// Prediction is the signed manifest's PCR policy for the build this
	// node's role must run.
	Prediction measure.Prediction
	// PCRs the quote must cover; DefaultPCRs (4, 7, 11) when empty.
	PCRs []int
}

// Result is a verified quote.
type Result struct {
	// Phase is the boot phase at which PCR 11 was quoted (stub, sysinit,
	// ready).
	Phase string `json:"phase"`
	// PCRs are the quoted, verified sha256 PCR values.
	PCRs map[int]measure.Digest `json:"pcrs"`
	// Events is the number of events in the verified log.
	Events int `json:"events"`
}

// VerifyEvidence checks a node's evidence, in this order, and returns a
// *Refusal naming the first check that fails:
//
//  1. quote-signature: the quote is a TPM-generated TPMS_ATTEST quote signed
//     by the AK;
//  2. nonce: its qualifying data is in.Nonce (constant-time compare);
//  3. quote-signature: it covers exactly the PCR values sent, in the sha256
//     bank (pcr-policy if it omits one of in.PCRs);
//  4. event-log-replay: the event log parses and replays to the quoted PCRs
//     (PCR 11 allowing the unlogged systemd-pcrphase extends of one of the
//     prediction's phases);
//  5. secure-boot: the log's SecureBoot variable event in PCR 7 holds 1;
//  6. pcr-policy: the log's events and the quoted values equal the
//     prediction (measure.Compare; PCR 11 at any quotable phase).
//
// Errors wrapping ErrInput are about in (the hub's own data), not the node.
func VerifyEvidence(ev Evidence, in VerifyInput) (Result, error) {
	pcrsWanted := in.PCRs
	if len(pcrsWanted) == 0 {
		pcrsWanted = DefaultPCRs
	}
	ak, err := attest.ParseAKPublic(in.AKPublic)
	if err != nil {
		return Result{}, fmt.Errorf("%w: AK public: %v", ErrInput, err)
	}
	if len(in.Nonce) == 0 {
		return Result{}, fmt.Errorf("%w: no nonce", ErrInput)
	}
	if err := in.Prediction.Validate(); err != nil {
		return Result{}, fmt.Errorf("%w: prediction: %w", ErrInput, err)
	}

	att, err := verifyQuoteSignature(ak, ev)
	if err != nil {
		return Result{}, err
	}
	if subtle.ConstantTimeCompare(att.ExtraData, in.Nonce) != 1 {
		return Result{}, refuse(CheckNonce, nil, "quote qualifying data %x is not the issued nonce %x", []byte(att.ExtraData), in.Nonce)
	}
	pcrs, err := verifyQuotedPCRs(ak, att, ev, pcrsWanted)
	if err != nil {
		return Result{}, err
	}
	log, err := verifyReplay(ev.EventLog, pcrs, in.Prediction)
	if err != nil {
		return Result{}, err
	}
	events := log.Events()
	if err := checkSecureBoot(events, pcrs); err != nil {
		return Result{}, err
	}
	phase, err := measure.Compare(in.Prediction, events, pcrs)
	if err != nil {
		var me *measure.MismatchError
		if errors.As(err, &me) {
			r := refuse(CheckPCRPolicy, err, "%s", mismatchDetail(me))
			r.Mismatches = me.Mismatches
			return Result{}, r
		}
		return Result{}, fmt.Errorf("%w: compare with the prediction: %w", ErrInput, err)
	}
	out := Result{Phase: phase.Name, PCRs: map[int]measure.Digest{}, Events: len(events)}
	for i, v := range pcrs {
		out.PCRs[i] = v
	}
	return out, nil
}

// verifyQuoteSignature checks the AK's signature over the quote, then that
// the signed bytes are a TPM-made quote.
func verifyQuoteSignature(ak *attest.AKPublic, ev Evidence) (*tpm2.AttestationData, error) {
	if len(ev.Quote) == 0 || len(ev.Signature) == 0 {
		return nil, refuse(CheckQuoteSignature, nil, "no quote or no signature")
	}
	sig, err := tpm2.DecodeSignature(bytes.NewBuffer(ev.Signature))
	if err != nil {
		return nil, refuse(CheckQuoteSignature, err, "signature is no TPMT_SIGNATURE: %v", err)
	}
	h := ak.Hash.New()
	h.Write(ev.Quote)
	digest := h.Sum(nil)
	switch pub := ak.Public.(type) {
	case *rsa.PublicKey:
		if sig.RSA == nil || sig.Alg != tpm2.AlgRSASSA {
			return nil, refuse(CheckQuoteSignature, nil, "signature algorithm %#x, want RSASSA for the RSA AK", uint16(sig.Alg))
		}
		if err := rsa.VerifyPKCS1v15(pub, ak.Hash, digest, sig.RSA.Signature); err != nil {
			return nil, refuse(CheckQuoteSignature, err, "quote signature does not verify with the enrolled AK: %v", err)
		}
	case *ecdsa.PublicKey:
		if sig.ECC == nil || sig.ECC.R == nil || sig.ECC.S == nil {
			return nil, refuse(CheckQuoteSignature, nil, "signature algorithm %#x, want ECDSA for the ECC AK", uint16(sig.Alg))
		}
		if !ecdsa.Verify(pub, digest, sig.ECC.R, sig.ECC.S) {
			return nil, refuse(CheckQuoteSignature, nil, "quote signature does not verify with the enrolled AK")
		}
	default:
		return nil, fmt.Errorf("%w: AK key type %T", ErrInput, ak.Public)
	}
	att, err := tpm2.DecodeAttestationData(ev.Quote)
	if err != nil {
		return nil, refuse(CheckQuoteSignature, err, "signed quote is no TPMS_ATTEST: %v", err)
	}
	if att.Magic != tpmGeneratedValue || att.Type != tpm2.TagAttestQuote || att.AttestedQuoteInfo == nil {
		return nil, refuse(CheckQuoteSignature, nil, "signed structure is not a TPM-generated quote (magic %#x, type %#x)", att.Magic, uint16(att.Type))
	}
	return att, nil
}

// verifyQuotedPCRs checks that the quote covers exactly the PCR values sent,
// in the sha256 bank, including every wanted PCR, and returns them.
func verifyQuotedPCRs(ak *attest.AKPublic, att *tpm2.AttestationData, ev Evidence, wanted []int) (map[int][]byte, error) {
	sel := att.AttestedQuoteInfo.PCRSelection
	if sel.Hash != tpm2.AlgSHA256 {
		return nil, refuse(CheckQuoteSignature, nil, "quote is over PCR bank %#x, want sha256", uint16(sel.Hash))
	}
	quoted := slices.Sorted(slices.Values(sel.PCRs))
	sent := slices.Sorted(maps.Keys(ev.PCRs))
	if !slices.Equal(quoted, sent) {
		return nil, refuse(CheckQuoteSignature, nil, "quote covers PCRs %v but values were sent for %v", quoted, sent)
	}
	var missing []int
	for _, i := range wanted {
		if !slices.Contains(quoted, i) {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		return nil, refuse(CheckPCRPolicy, nil, "quote does not cover PCR %v (quoted %v, policy needs %v)", missing, quoted, wanted)
	}
	h := ak.Hash.New()
	pcrs := make(map[int][]byte, len(quoted))
	for _, i := range quoted {
		if len(ev.PCRs[i]) != measure.DigestSize {
			return nil, refuse(CheckQuoteSignature, nil, "PCR %d value has %d bytes, want %d", i, len(ev.PCRs[i]), measure.DigestSize)
		}
		h.Write(ev.PCRs[i])
		pcrs[i] = ev.PCRs[i]
	}
	if got := h.Sum(nil); !bytes.Equal(got, att.AttestedQuoteInfo.PCRDigest) {
		return nil, refuse(CheckQuoteSignature, nil, "PCR values sent (digest %x) are not the quoted ones (digest %x)", got, []byte(att.AttestedQuoteInfo.PCRDigest))
	}
	return pcrs, nil
}

// verifyReplay parses the log and checks it replays to the quoted PCRs:
// go-attestation's replay for every PCR but 11; a quoted PCR with no event
// must be zero; PCR 11 must be the log's replay extended with the words of
// one of the prediction's phases (systemd-pcrphase does not log).
func verifyReplay(raw []byte, pcrs map[int][]byte, pred measure.Prediction) (*measure.EventLog, error) {
	log, err := measure.ParseEventLog(raw)
	if err != nil {
		return nil, refuse(CheckEventLogReplay, err, "%v", err)
	}
	firmware := make(map[int][]byte, len(pcrs))
	for i, v := range pcrs {
		if i != measure.PCRKernelImage {
			firmware[i] = v
		}
	}
	if err := log.Verify(firmware); err != nil {
		return nil, refuse(CheckEventLogReplay, err, "%v", err)
	}
	replay := map[int][]byte{}
	for _, e := range log.Events() {
		if _, ok := pcrs[e.PCR]; !ok || e.Type == measure.EvNoAction {
			continue
		}
		if replay[e.PCR] == nil {
			replay[e.PCR] = make([]byte, measure.DigestSize)
		}
		replay[e.PCR] = measure.Extend(replay[e.PCR], e.Digest)
	}
	for _, i := range slices.Sorted(maps.Keys(pcrs)) {
		if replay[i] == nil && !bytes.Equal(pcrs[i], make([]byte, measure.DigestSize)) {
			return nil, refuse(CheckEventLogReplay, nil, "PCR %d is quoted as %x but the log has no event for it", i, pcrs[i])
		}
	}
	if v, ok := pcrs[measure.PCRKernelImage]; ok && replay[measure.PCRKernelImage] != nil {
		phases := pred.PCR11Phases
		if len(phases) == 0 {
			for _, ph := range measure.BootPhases {
				phases = append(phases, measure.PhaseValue{Phase: ph})
			}
		}
		var tried []string
		for _, ph := range phases {
			at := measure.PCR11AtPhase(replay[measure.PCRKernelImage], ph.Words...)
			if bytes.Equal(at, v) {
				return log, nil
			}
			tried = append(tried, fmt.Sprintf("%s %x", ph.Name, at))
		}
		return nil, refuse(CheckEventLogReplay, nil, "PCR 11 is quoted as %x but the log replays to %s", v, strings.Join(tried, ", "))
	}
	return log, nil
}

// mismatchDetail lists every difference from the prediction, one per clause.
func mismatchDetail(me *measure.MismatchError) string {
	lines := make([]string, len(me.Mismatches))
	for i, m := range me.Mismatches {
		lines[i] = m.String()
	}
	return fmt.Sprintf("%d difference(s) from the signed prediction: %s", len(lines), strings.Join(lines, "; "))
}
