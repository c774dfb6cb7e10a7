// Command kubedosd is the node daemon. At start it reports the booted build,
// slot and TPM PCRs (console and /run/kubedos/status.json); when the machine
// names a hub (SMBIOS OEM string kubedos.hub) it enrolls through the
// attestation gate on first boot and renews its certificate with a fresh
// quote before it expires. Once enrolled it serves the node API (mTLS, port
// 7444: version, health, services, logs, dmesg, reboot, shutdown, config,
// drift) with the enrollment certificate. On the master it also keeps the
// cluster's hub once an admin hands it over (port 7443), and serves it again
// at every boot.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kubedos/kubedos/internal/agent"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/hubhost"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
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
	var keeper agent.HubKeeper
	if k, err := hubKeeper(); err != nil {
		agent.Console("kubedosd: hub keeper: " + err.Error())
	} else if k != nil {
		keeper = k
		done := make(chan struct{})
		defer func() { <-done }()
		go func() { defer close(done); k.Run(ctx) }()
	}
	if err := agent.RunIdentity(ctx, st, keeper); err != nil && ctx.Err() == nil {
		agent.Console(agent.RefusedLinePrefix + err.Error())
	}
	<-ctx.Done()
	return nil
}

// hubKeeper is the master's keeper of the cluster's hub; nil on other roles.
func hubKeeper() (*hubhost.Keeper, error) {
	role, err := os.ReadFile(agent.RoleFile)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(string(role)) != string(spec.RoleMaster) {
		return nil, nil
	}
	ca, err := sign.ReadCertificate(agent.CAFile)
	if err != nil {
		return nil, err
	}
	pub, err := sign.ReadVerifyKey(agent.ArtifactPubFile)
	if err != nil {
		return nil, err
	}
	return hubhost.NewKeeper(hubhost.KeeperConfig{Dir: agent.HubDir, CA: ca, ArtifactKey: pub, Sealer: hubhost.DeviceSealer(agent.TPMPath),
		Listen: fmt.Sprintf(":%d", api.HubPort), SelfFile: agent.HubAddrFile, SelfAddr: fmt.Sprintf("127.0.0.1:%d", api.HubPort),
		Logf: func(f string, a ...any) { agent.Console("kubedosd: " + fmt.Sprintf(f, a...)) }}), nil
}
