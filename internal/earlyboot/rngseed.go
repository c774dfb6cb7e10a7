package earlyboot

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"unsafe"

	"github.com/google/go-tpm/legacy/tpm2"
	"golang.org/x/sys/unix"
)

// rngSeedBytes is how much of the TPM's randomness seeds the kernel's
// random number generator: 256 bits, what the kernel needs to call its
// CRNG initialised.
const rngSeedBytes = 32

// SeedKernelRNG feeds rngSeedBytes from the TPM's RNG into the kernel's
// pool, credited, before anything in the initrd asks for random numbers.
// Without it getrandom(2) blocks until the kernel has gathered entropy of
// its own: on a VM without RDRAND or virtio-rng (QEMU under TCG) that is
// about a second, spent in the first TPM session's nonce or the first
// state key. The TPM is already trusted for the state key's randomness
// (NewStateKey mixes both); on hardware with RDRAND the pool is ready and
// this changes nothing.
func SeedKernelRNG(tpm io.ReadWriter) error {
	seed := make([]byte, 0, rngSeedBytes)
	for len(seed) < rngSeedBytes {
		b, err := tpm2.GetRandom(tpm, uint16(rngSeedBytes-len(seed)))
		if err != nil {
			return fmt.Errorf("seed the kernel's RNG from the TPM: %w", err)
		}
		if len(b) == 0 {
			return fmt.Errorf("seed the kernel's RNG from the TPM: no bytes")
		}
		seed = append(seed, b...)
	}
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("seed the kernel's RNG: %w", err)
	}
	defer f.Close()
	info := randPoolInfo(seed)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); errno != 0 {
		return fmt.Errorf("seed the kernel's RNG (RNDADDENTROPY): %w", errno)
	}
	return nil
}

// randPoolInfo is struct rand_pool_info: entropy_count (bits credited),
// buf_size (bytes), then the bytes.
func randPoolInfo(seed []byte) []byte {
	b := make([]byte, 8+len(seed))
	binary.NativeEndian.PutUint32(b[0:], uint32(len(seed)*8))
	binary.NativeEndian.PutUint32(b[4:], uint32(len(seed)))
	copy(b[8:], seed)
	return b
}
