// The web console beside the hub on the master: the keeper listens on
// KeeperConfig.ConsoleListen and runs KeeperConfig.Console (wired by
// cmd/kubedosd to console.ServeAtHub) for as long as the hub serves.

package hubhost

import (
	"context"
	"net"
)

// ConsoleAddr is where the web console is served ("" when it is not).
func (k *Keeper) ConsoleAddr() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.consoleAddr
}

// serveConsole serves the web console beside the hub, if configured; like
// metrics, a console that cannot listen is logged and the hub serves on.
// k.mu held.
func (k *Keeper) serveConsole(ctx context.Context, h *Hub) {
	if k.cfg.ConsoleListen == "" || k.cfg.Console == nil {
		return
	}
	lis, err := net.Listen("tcp", k.cfg.ConsoleListen)
	if err != nil {
		k.cfg.Logf("web console not served: listen %s: %v", k.cfg.ConsoleListen, err)
		return
	}
	k.consoleAddr = lis.Addr().String()
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		if err := k.cfg.Console(ctx, h, lis); err != nil {
			k.cfg.Logf("web console: %v", err)
		}
		lis.Close()
		k.mu.Lock()
		k.consoleAddr = ""
		k.mu.Unlock()
	}()
}
