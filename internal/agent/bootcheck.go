package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/errdefs"
)

// BootCheckFile (on state) keeps why kubedosd last refused to mark a trial
// boot good, so the operator can read it after the fallback boot.
const BootCheckFile = "boot-check.txt"

// Console lines of the boot check.
const (
	BootGoodLinePrefix   = "KUBEDOSD-BOOT-GOOD "
	BootFailedLinePrefix = "KUBEDOSD-BOOT-FAILED "
)

// bootCheckFault, when set at link time (-X), is a critical check that
// always fails. Only the e2e's deliberately broken build sets it, to drill
// the automatic rollback; no release build does (the manifest records the
// kubedosd digest, so such a build is visibly a different one).
var bootCheckFault string

// BootCheck decides a trial boot: when the running entry still has a boot
// counter, it waits (up to timeout) for the node to be healthy — attested
// for this boot, every critical health check passing — and then blesses the
// entry. If a check fails for good, or time runs out, it records why and
// reboots, so the boot loader counts the try down and, once tries are out,
// boots the previous slot. A boot that is not on trial only marks itself good.
type BootCheck struct {
	Slots    BootSlots
	Health   func(context.Context) api.Health
	Attested func() error // nil once this boot re-attested to the hub
	Reboot   func(ctx context.Context) error
	Timeout  time.Duration
	StateDir string
	Logf     func(string, ...any)
	Clock    Clock // SystemClock when nil
	// GoodFile tells the boot-deadline unit the boot was blessed (default
	// BootGoodFile); Console shows the verdict (default Console).
	GoodFile string
	Console  func(string)
}

// BootSlots is what the boot check needs of the A/B machinery (*Slots).
type BootSlots interface {
	State() *api.BootState
	// Bless marks the booted entry good, returning its new name.
	Bless() (string, error)
}

// Run returns after blessing, after a reboot was asked, or when ctx ends.
func (b BootCheck) Run(ctx context.Context) error {
	if b.GoodFile == "" {
		b.GoodFile = BootGoodFile
	}
	if b.Console == nil {
		b.Console = Console
	}
	state := b.Slots.State()
	if state.Error != "" {
		return fmt.Errorf("boot check: %s", state.Error)
	}
	if !state.Trial {
		markGood(b.GoodFile)
		return nil
	}
	clock := b.Clock
	if clock == nil {
		clock = SystemClock{}
	}
	b.Logf("trial boot of %s: checking health before marking it good", state.Entry)
	deadline := clock.Now().Add(b.Timeout)
	var why string
	for {
		fail, final := b.check(ctx)
		if fail == "" {
			break
		}
		why = fail
		if final || clock.Now().After(deadline) {
			return b.fail(ctx, clock, state.Entry, why)
		}
		if !sleep(ctx, clock, 3*time.Second) {
			return ctx.Err()
		}
	}
	name, err := b.Slots.Bless()
	if err != nil {
		return b.fail(ctx, clock, state.Entry, "mark the boot good: "+err.Error())
	}
	markGood(b.GoodFile)
	_ = os.Remove(filepath.Join(b.StateDir, BootCheckFile))
	b.Console(BootGoodLinePrefix + name)
	return nil
}

// check returns why the node is not healthy yet ("" when it is), and
// whether that is final.
func (b BootCheck) check(ctx context.Context) (string, bool) {
	if bootCheckFault != "" {
		return "fault injected at link time: " + bootCheckFault, true
	}
	if err := b.Attested(); err != nil {
		return "re-attestation: " + err.Error(), errors.Is(err, errAttestRefused)
	}
	h := b.Health(ctx)
	var bad []string
	for _, c := range h.Checks {
		if c.Critical && !c.OK {
			bad = append(bad, c.Name+": "+c.Detail)
		}
	}
	if len(bad) == 0 {
		return "", false
	}
	// systemd still starting is worth waiting for; degraded is an answer.
	return strings.Join(bad, "; "), h.SystemState == "degraded"
}

func (b BootCheck) fail(ctx context.Context, clock Clock, entry, why string) error {
	msg := fmt.Sprintf("%s: %s", entry, why)
	_ = os.MkdirAll(b.StateDir, 0o700)
	_ = durable.WriteFile(filepath.Join(b.StateDir, BootCheckFile), []byte(clock.Now().UTC().Format(time.RFC3339)+" "+msg+"\n"), 0o644)
	b.Console(BootFailedLinePrefix + msg + "; rebooting to count the try down")
	return b.Reboot(ctx)
}

func markGood(file string) {
	_ = os.MkdirAll(filepath.Dir(file), 0o755)
	_ = durable.WriteFile(file, nil, 0o644)
}

// errAttestRefused marks the hub's refusal of this boot's quote.
var errAttestRefused = errdefs.New(errdefs.ErrPermission, "the hub refused this boot's attestation")
