package cluster

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/api/apitest"
)

// The hub handoff must not start before the master's node API answers:
// kubedosd reports enrolled a moment before it listens.
func TestWaitNodeAPI(t *testing.T) {
	env := apitest.NewNode(t, "w-1", "worker", versionNode{})
	access := Access{Keys: env.Keys}

	t.Run("answers once it listens", func(t *testing.T) {
		addr := freeAddr(t)
		var ev recorder
		// Refused first; the node listens only after a poll was refused.
		s := env.Server
		served := make(chan error, 1)
		waiting := make(chan struct{}, 1)
		ev.onWait = func() {
			select {
			case waiting <- struct{}{}:
			default:
			}
		}
		go func() {
			<-waiting
			lis, err := net.Listen("tcp", addr)
			if err != nil {
				served <- err
				return
			}
			served <- s.Serve(lis)
		}()
		if err := WaitNodeAPI(context.Background(), NodeDialer{Addr: addr, Name: "w-1", Access: access}, time.Minute, 20*time.Millisecond, &ev); err != nil {
			t.Fatalf("WaitNodeAPI: %v", err)
		}
		if len(ev.waits) == 0 {
			t.Error("no waiting progress was reported before the node answered")
		}
	})

	t.Run("gives up naming the node and address", func(t *testing.T) {
		addr := freeAddr(t)
		err := WaitNodeAPI(context.Background(), NodeDialer{Addr: addr, Name: "master", Access: access}, 100*time.Millisecond, 20*time.Millisecond, nil)
		if err == nil {
			t.Fatal("WaitNodeAPI succeeded with nothing listening")
		}
		for _, want := range []string{"master", addr, "did not answer"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
	})

	t.Run("stops when cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := WaitNodeAPI(ctx, NodeDialer{Addr: "127.0.0.1:1", Name: "master", Access: access}, time.Hour, time.Hour, nil); err != context.Canceled {
			t.Fatalf("WaitNodeAPI on a cancelled context: %v, want context.Canceled", err)
		}
	})
}
