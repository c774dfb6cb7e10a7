package earlyboot

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/google/go-tpm-tools/client"
	pb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/kubedos/kubedos/internal/tpmseal"
	"google.golang.org/protobuf/proto"
)

// StatePCRs are what the state key is sealed to: PCR 7 as it was at first
// boot (the firmware's Secure Boot state and keys, and the db certificate
// that let the UKI run) and PCR 11 (the UKI's measured sections, from
// systemd-stub) holding a value the platform's PCR policy key signed
// (internal/tpmseal, TPM2_PolicyAuthorize). A signed A/B upgrade or a
// rollback unlocks; a UKI the PCR policy key never signed does not, even if
// the db key signed it.
var StatePCRs = []int{7, 11}

// legacyStatePCRs is the PCR 7 alone of disks sealed before the signed
// PCR 11 policy; such a disk still unlocks under it (the key cannot be
// resealed without the old header being overwritten in place).
var legacyStatePCRs = []int{7}

// StatePolicy is the UKI's signed PCR policy, as systemd-stub hands it to
// the initrd (.pcrpkey, .pcrsig).
type StatePolicy = tpmseal.Policy

// Files systemd-stub makes in the initrd from the UKI's .pcrpkey and
// .pcrsig sections.
const (
	StubPCRPublicKey = "/.extra/tpm2-pcr-public-key.pem"
	StubPCRSignature = "/.extra/tpm2-pcr-signature.json"
)

// ErrNoStatePolicy: the UKI carries no signed PCR policy.
var ErrNoStatePolicy = tpmseal.ErrNoPolicy

// ErrStateSealed means the TPM would not give the state key back: another
// TPM, or the PCRs the key is sealed to hold other values.
var ErrStateSealed = errors.New("the TPM refused to unseal the state key")

// NewStateKey makes a StateKeySize key from the TPM's random number
// generator and the kernel's, XORed: either alone being good is enough.
func NewStateKey(tpm io.ReadWriter, kernel io.Reader) ([]byte, error) {
	key := make([]byte, StateKeySize)
	if _, err := io.ReadFull(kernel, key); err != nil {
		return nil, fmt.Errorf("random state key: %w", err)
	}
	for n := 0; n < len(key); {
		// A TPM returns at most one digest's worth per call.
		b, err := tpm2.GetRandom(tpm, uint16(len(key)-n))
		if err != nil {
			return nil, fmt.Errorf("random state key from the TPM: %w", err)
		}
		if len(b) == 0 {
			return nil, errors.New("random state key from the TPM: no bytes")
		}
		for i := range b {
			if n+i < len(key) {
				key[n+i] ^= b[i]
			}
		}
		n += len(b)
	}
	return key, nil
}

// SealStateKey seals key under the TPM's storage root key to StatePCRs:
// usable only on this TPM, with PCR 7 as now and PCR 11 signed by the
// policy's key. It refuses when the current PCR 11 is not signed: that UKI
// could never unlock what it made.
func SealStateKey(tpm io.ReadWriter, key []byte, policy StatePolicy) ([]byte, error) {
	if policy.Key == nil {
		return nil, ErrNoStatePolicy
	}
	blob, err := tpmseal.Seal(tpm, key, policy.Key, policy.Signatures)
	switch {
	case errors.Is(err, tpmseal.ErrNotSigned):
		// What the console shows an operator whose UKI is not the platform's.
		return nil, fmt.Errorf("%w: refusing to seal the state key", err)
	case err != nil:
		return nil, fmt.Errorf("seal the state key to PCR %s: %w", pcrList(StatePCRs), err)
	}
	if len(blob) > MaxSealedKey {
		return nil, fmt.Errorf("sealed state key is %d bytes, the header holds %d", len(blob), MaxSealedKey)
	}
	return blob, nil
}

// UnsealStateKey gives back the key SealStateKey sealed, or ErrStateSealed
// when this TPM refuses: a blob from another TPM does not load under this
// one's storage root key, a changed PCR 7 or an unsigned PCR 11 fails the
// policy. A blob sealed to PCR 7 alone (before the signed policy) unseals
// under PCR 7.
func UnsealStateKey(tpm io.ReadWriter, blob []byte, policy StatePolicy) ([]byte, error) {
	if !tpmseal.IsBlob(blob) {
		return unsealLegacy(tpm, blob)
	}
	if policy.Key == nil {
		return nil, fmt.Errorf("%w (PCR %s policy): %w", ErrStateSealed, pcrList(StatePCRs), ErrNoStatePolicy)
	}
	key, err := tpmseal.Unseal(tpm, blob, policy.Key, policy.Signatures)
	switch {
	case errors.Is(err, tpmseal.ErrNotSigned):
		return nil, fmt.Errorf("%w (PCR %s policy): this UKI is not one the platform's PCR policy key signed: %v", ErrStateSealed, pcrList(StatePCRs), err)
	case errors.Is(err, tpmseal.ErrInput):
		return nil, fmt.Errorf("%w: sealed state key: %w", ErrStateHeader, err)
	case err != nil:
		return nil, fmt.Errorf("%w (PCR %s policy): this disk was not sealed on this machine, Secure Boot changed, or this UKI is not signed for it: %v", ErrStateSealed, pcrList(StatePCRs), err)
	}
	if len(key) != StateKeySize {
		return nil, fmt.Errorf("%w: unsealed state key is %d bytes, want %d", ErrStateHeader, len(key), StateKeySize)
	}
	return key, nil
}

// sealLegacy seals as kubedos-init did before the signed PCR 11 policy
// (go-tpm-tools, PCR 7 only); only tests make such blobs now.
func sealLegacy(tpm io.ReadWriter, key []byte) ([]byte, error) {
	srk, err := client.StorageRootKeyECC(tpm)
	if err != nil {
		return nil, fmt.Errorf("TPM storage root key: %w", err)
	}
	defer srk.Close()
	sb, err := srk.Seal(key, client.SealOpts{Current: tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: legacyStatePCRs}})
	if err != nil {
		return nil, err
	}
	return proto.Marshal(sb)
}

func unsealLegacy(tpm io.ReadWriter, blob []byte) ([]byte, error) {
	var sb pb.SealedBytes
	if err := proto.Unmarshal(blob, &sb); err != nil {
		return nil, fmt.Errorf("%w: sealed state key: %w", ErrStateHeader, err)
	}
	srk, err := client.StorageRootKeyECC(tpm)
	if err != nil {
		return nil, fmt.Errorf("TPM storage root key: %w", err)
	}
	defer srk.Close()
	key, err := srk.Unseal(&sb, client.UnsealOpts{})
	if err != nil {
		pcrs := make([]int, len(sb.GetPcrs()))
		for i, p := range sb.GetPcrs() {
			pcrs[i] = int(p)
		}
		return nil, fmt.Errorf("%w (PCR %s policy): this disk was not sealed on this machine or Secure Boot changed: %v", ErrStateSealed, pcrList(pcrs), err)
	}
	if len(key) != StateKeySize {
		return nil, fmt.Errorf("%w: unsealed state key is %d bytes, want %d", ErrStateHeader, len(key), StateKeySize)
	}
	return key, nil
}

// pcrList renders PCR indices as "7" or "7,11".
func pcrList(pcrs []int) string {
	var b strings.Builder
	for i, p := range pcrs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(p))
	}
	return b.String()
}
