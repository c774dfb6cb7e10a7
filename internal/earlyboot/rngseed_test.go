package earlyboot

import (
	"encoding/binary"
	"testing"
)

func TestRandPoolInfo(t *testing.T) {
	seed := []byte{1, 2, 3, 4}
	b := randPoolInfo(seed)
	if got := binary.NativeEndian.Uint32(b[0:]); got != 32 {
		t.Errorf("entropy_count %d bits, want 32", got)
	}
	if got := binary.NativeEndian.Uint32(b[4:]); got != 4 {
		t.Errorf("buf_size %d, want 4", got)
	}
	if string(b[8:]) != string(seed) {
		t.Errorf("buf %x", b[8:])
	}
}
