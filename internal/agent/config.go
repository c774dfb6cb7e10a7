package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/nodeconsole"
)

// Config is kubedosd's configuration: built once in cmd/kubedosd
// (DefaultConfig, then what the machine says), never changed after.
type Config struct {
	// Image files: the cluster CA, the node's role.
	CAFile, RoleFile string
	// IdentityDir holds node.key, node.crt and ak.blob; StateDir the node
	// configuration, the revocation list, the plane keys and the boot check.
	IdentityDir, StateDir string
	// HubAddrFile names the hub once a master has taken it over.
	HubAddrFile string
	// OpenProver opens the node's TPM with its event log (the device and
	// securityfs on a node; the go-tpm-tools simulator in tests).
	OpenProver func() (*attest.Prover, error)
	// Keeper keeps the cluster's hub on a master (nil elsewhere).
	Keeper Keeper

	NodeAPIAddr, MetricsAddr string
	// How often the planes are joined again, the revocation list fetched
	// and drift checked.
	PlanesEvery, RevocationsEvery, DriftEvery time.Duration
	// RevocationMaxAge: past it, the node API refuses all but readers.
	RevocationMaxAge time.Duration
	// BootCheckTimeout bounds how long a trial boot may take to become
	// healthy (the boot-deadline unit's 6 minutes are the backstop when
	// kubedosd itself does not run).
	BootCheckTimeout time.Duration
	// MinBackoff and MaxBackoff pace the restarts of a failed controller.
	MinBackoff, MaxBackoff time.Duration

	// OpenConsole opens the terminal of the node console (tty1, or the
	// serial console without a display), says whether it is the serial
	// console and why it chose it; nil runs no console. Journal gives the
	// console kubedosd's last lines.
	OpenConsole func() (term nodeconsole.Terminal, serial bool, why string, err error)
	// ConsolePort finds the virtio-serial port that gets a read-only copy
	// of the console ("" while there is none; nil: never looked for).
	ConsolePort func() string
	Journal     LogReader

	Clock Clock
	// Logf writes a line to the journal and the console.
	Logf func(string, ...any)
}

// Keeper serves the cluster's hub on a master (internal/hubhost's Keeper).
type Keeper interface {
	HubKeeper
	Run(ctx context.Context)
}

// DefaultConfig is a node's configuration: the image's paths, the
// device TPM, the ports of internal/api.
func DefaultConfig() Config {
	return Config{
		CAFile: CAFile, RoleFile: RoleFile, IdentityDir: IdentityDir, StateDir: NodeStateDir, HubAddrFile: HubAddrFile,
		OpenProver:  func() (*attest.Prover, error) { return attest.OpenProver(TPMPath, EventLogPath) },
		NodeAPIAddr: fmt.Sprintf(":%d", api.NodeAPIPort), MetricsAddr: fmt.Sprintf(":%d", api.NodeMetricsPort),
		PlanesEvery: 10 * time.Second, RevocationsEvery: 30 * time.Second, DriftEvery: 5 * time.Minute,
		RevocationMaxAge: DefaultRevocationMaxAge, BootCheckTimeout: 3 * time.Minute,
		// As the hand-written loops were: enrollment retried within ~30 s,
		// re-attestation within 20 s of the hub coming back.
		MinBackoff: time.Second, MaxBackoff: 20 * time.Second,
		OpenConsole: OpenNodeConsole, Journal: NewHostSystem(),
		ConsolePort: func() string { return nodeconsole.FindPort("/sys", "/dev") },
		Clock:       SystemClock{},
		Logf:        func(f string, a ...any) { Console("kubedosd: " + fmt.Sprintf(f, a...)) },
	}
}
