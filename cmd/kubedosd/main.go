// Command kubedosd is the node daemon. At start it reports the booted build,
// slot and TPM PCRs (console and /run/kubedos/status.json); when the machine
// names a hub (SMBIOS OEM string kubedos.hub) it enrolls through the
// attestation gate on first boot and renews its certificate with a fresh
// quote before it expires. Once enrolled it serves the node API (mTLS, port
// 7444: version, health, services, logs, dmesg, reboot, shutdown, config,
// drift) with the enrollment certificate. On the master it also keeps the
// cluster's hub once an admin hands it over (port 7443), and serves it again
// at every boot, with the web console beside it (port 8443). Its status is drawn on tty1 (the node console, with the
// Day 0 form of a bare-metal node that names no hub). Each of these is a
// controller under one supervisor
// (internal/agent); main only builds the configuration.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kubedos/kubedos/internal/agent"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/console"
	"github.com/kubedos/kubedos/internal/earlyboot"
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
	cfg := agent.DefaultConfig()
	if k, err := hubKeeper(cfg); err != nil {
		cfg.Logf("hub keeper: %v", err)
	} else if k != nil {
		cfg.Keeper = k
	}
	if err := agent.New(cfg).Run(ctx, st); err != nil {
		return err
	}
	// A standalone boot has nothing to supervise; kubedosd stays up.
	<-ctx.Done()
	return nil
}

// hubKeeper is the master's keeper of the cluster's hub; nil on other roles.
func hubKeeper(cfg agent.Config) (*hubhost.Keeper, error) {
	role, err := os.ReadFile(cfg.RoleFile)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(string(role)) != string(spec.RoleMaster) {
		return nil, nil
	}
	ca, err := sign.ReadCertificate(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	pub, err := sign.ReadVerifyKey(agent.ArtifactPubFile)
	if err != nil {
		return nil, err
	}
	return hubhost.NewKeeper(hubhost.KeeperConfig{Dir: agent.HubDir, CA: ca, ArtifactKey: pub, Sealer: hubhost.DeviceSealer(agent.TPMPath, earlyboot.RunPCRPublicKey, earlyboot.RunPCRSignature),
		Listen: fmt.Sprintf(":%d", api.HubPort), MetricsListen: fmt.Sprintf(":%d", api.HubMetricsPort),
		ConsoleListen: fmt.Sprintf(":%d", api.ConsolePort), Console: func(ctx context.Context, h *hubhost.Hub, lis net.Listener) error {
			return console.ServeAtHub(ctx, h, lis, console.AtHubOptions{Logf: cfg.Logf})
		},
		SelfFile: cfg.HubAddrFile, SelfAddr: fmt.Sprintf("127.0.0.1:%d", api.HubPort),
		EtcdSnapshotDir: agent.EtcdSnapshotDir,
		Logf:            cfg.Logf}), nil
}
