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
	"google.golang.org/protobuf/proto"
)

// StatePCRs are what the state key is sealed to: PCR 7, the Secure Boot
// policy, as the master's CA key (internal/hubhost). It holds the firmware's
// Secure Boot state and keys and the db certificate that authorised the boot
// loader and the UKI, so it stays the same across signed A/B upgrades and
// rollbacks and changes when Secure Boot is off or its keys change. It does
// not tell one UKI signed with the db key from another (docs/security.md).
var StatePCRs = []int{7}

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

// SealStateKey seals key under the TPM's storage root key to the current
// values of pcrs and returns the sealed blob (go-tpm-tools' SealedBytes):
// usable only on this TPM, and only while those PCRs hold these values.
func SealStateKey(tpm io.ReadWriter, key []byte, pcrs []int) ([]byte, error) {
	srk, err := client.StorageRootKeyECC(tpm)
	if err != nil {
		return nil, fmt.Errorf("TPM storage root key: %w", err)
	}
	defer srk.Close()
	sb, err := srk.Seal(key, client.SealOpts{Current: tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: pcrs}})
	if err != nil {
		return nil, fmt.Errorf("seal the state key to PCR %v: %w", pcrs, err)
	}
	blob, err := proto.Marshal(sb)
	if err != nil {
		return nil, err
	}
	if len(blob) > MaxSealedKey {
		return nil, fmt.Errorf("sealed state key is %d bytes, the header holds %d", len(blob), MaxSealedKey)
	}
	return blob, nil
}

// UnsealStateKey gives back the key SealStateKey sealed, or ErrStateSealed
// when this TPM refuses: a blob from another TPM does not load under this
// one's storage root key, and a changed PCR fails the policy.
func UnsealStateKey(tpm io.ReadWriter, blob []byte) ([]byte, error) {
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
