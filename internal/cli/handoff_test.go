package cli

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// The hub handoff must not start before the master's node API answers:
// kubedosd reports enrolled a moment before it listens.
func TestWaitNodeAPI(t *testing.T) {
	keys, s, _ := fakeNodeServer(t)
	pr := newProgress(io.Discard)

	t.Run("answers after it starts listening", func(t *testing.T) {
		// Reserve a port, free it, and serve on it only after the first polls
		// have been refused.
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		lis.Close()
		go func() {
			time.Sleep(300 * time.Millisecond)
			late, err := net.Listen("tcp", addr)
			if err != nil {
				t.Errorf("listen again on %s: %v", addr, err)
				return
			}
			_ = s.Serve(late)
		}()
		nc := nodeAPIClient{addr: addr, name: "w-1", keys: keys}
		if err := waitNodeAPI(context.Background(), nc, time.Minute, 50*time.Millisecond, pr); err != nil {
			t.Fatalf("waitNodeAPI: %v", err)
		}
	})

	t.Run("gives up naming the node and address", func(t *testing.T) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		lis.Close()
		nc := nodeAPIClient{addr: addr, name: "master", keys: keys}
		err = waitNodeAPI(context.Background(), nc, 200*time.Millisecond, 50*time.Millisecond, pr)
		if err == nil {
			t.Fatal("waitNodeAPI succeeded with nothing listening")
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
		nc := nodeAPIClient{addr: "127.0.0.1:1", name: "master", keys: keys}
		if err := waitNodeAPI(ctx, nc, time.Hour, time.Hour, pr); err != context.Canceled {
			t.Fatalf("waitNodeAPI on a cancelled context: %v, want context.Canceled", err)
		}
	})
}
