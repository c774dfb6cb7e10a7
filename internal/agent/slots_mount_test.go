package agent

import (
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The ESP is busy while systemd checks and automounts it early in a boot:
// the mount waits that out instead of failing an upgrade, gives up after a
// bound, and does not retry other errors.
func TestMountWhileBusy(t *testing.T) {
	cases := []struct {
		name     string
		results  []error
		wantErr  string
		attempts int
	}{
		{"free at once", []error{nil}, "", 1},
		{"busy twice, then free", []error{unix.EBUSY, unix.EBUSY, nil}, "", 3},
		{"another error is not retried", []error{unix.EINVAL}, "invalid argument", 1},
		{"busy for good", nil, "still busy after", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			attempts, stale := 0, 0
			mount := func() error {
				attempts++
				if c.results == nil {
					return unix.EBUSY
				}
				return c.results[attempts-1]
			}
			err := mountWhileBusy(mount, func() { stale++ }, 50*time.Millisecond, time.Millisecond)
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want %q", err, c.wantErr)
			}
			if c.attempts > 0 && attempts != c.attempts {
				t.Errorf("%d attempts, want %d", attempts, c.attempts)
			}
			if c.results == nil && (attempts < 2 || !errors.Is(err, unix.EBUSY)) {
				t.Errorf("busy for good: %d attempts, %v", attempts, err)
			}
			if stale != max(attempts-1, 0) && c.results != nil && c.wantErr == "" {
				t.Errorf("%d stale unmounts for %d attempts", stale, attempts)
			}
		})
	}
}
