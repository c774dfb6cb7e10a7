package agent

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"

	"github.com/kubedos/kubedos/internal/api"
)

// NodeAPIAddr is where kubedosd serves the node API once enrolled.
var NodeAPIAddr = fmt.Sprintf(":%d", api.NodeAPIPort)

// runEnrolled is the enrolled node's life: the node API (with the stored
// configuration applied first) and the revocation list it checks callers
// against, beside the certificate renewal loop. All three are owned by ctx;
// when renewal ends (a refusal: the node is quarantined) the API stops too.
// A node API that cannot start is logged and the node keeps its identity.
func runEnrolled(ctx context.Context, cfg EnrollConfig, st Status, logf func(string, ...any)) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	revFile := filepath.Join(NodeStateDir, RevokedFile)
	revs, err := LoadRevocationList(revFile)
	if err != nil {
		logf("%v; starting from an empty list", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		RefreshRevocations(ctx, cfg, revs, revocationsEvery, logf)
	}()

	srv, err := NewNodeAPI(NodeAPIConfig{Name: cfg.Name, Role: cfg.Role, CA: cfg.CA, IdentityDir: cfg.StateDir,
		StateDir: NodeStateDir, Status: st, System: NewHostSystem(), Revocations: revs,
		Logf: func(f string, a ...any) { logf("node API: "+f, a...) }})
	if err == nil {
		if aerr := srv.ApplyStoredConfig(); aerr != nil {
			logf("node configuration: %v", aerr)
		}
		var lis net.Listener
		if lis, err = net.Listen("tcp", NodeAPIAddr); err == nil {
			logf("node API on %s", lis.Addr())
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := srv.Serve(ctx, lis); err != nil {
					logf("node API: %v", err)
				}
			}()
		}
	}
	if err != nil {
		logf("node API not started: %v", err)
	}
	return RenewLoop(ctx, cfg, logf)
}
