// Command kubedosd is the node daemon. At start it reports the booted build,
// slot and TPM PCRs (console and /run/kubedos/status.json); when the machine
// names a hub (SMBIOS OEM string kubedos.hub) it enrolls through the
// attestation gate on first boot and renews its certificate with a fresh
// quote before it expires. Once enrolled it serves the node API (mTLS, port
// 7444: version, health, services, logs, dmesg, reboot, shutdown, config,
// drift) with the enrollment certificate.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kubedos/kubedos/internal/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "kubedosd: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	st, err := agent.ReadStatus([]int{4, 7, 11})
	if err != nil {
		return err
	}
	if len(os.Args) > 1 && os.Args[1] == "status" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	agent.Console(agent.StatusLine(st))
	if err := agent.EnsureDataID(); err != nil {
		agent.Console("kubedosd: data partition: " + err.Error())
	}
	if err := os.MkdirAll("/run/kubedos", 0o755); err == nil {
		b, _ := json.MarshalIndent(st, "", "  ")
		_ = os.WriteFile("/run/kubedos/status.json", b, 0o644)
	}
	if err := agent.RunIdentity(ctx, st); err != nil && ctx.Err() == nil {
		agent.Console(agent.RefusedLinePrefix + err.Error())
	}
	<-ctx.Done()
	return nil
}
