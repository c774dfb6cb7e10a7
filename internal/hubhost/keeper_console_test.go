package hubhost

import (
	"context"
	"fmt"
	"net"
	"testing"
)

// The master's kubedosd serves the web console beside the kept hub: the
// keeper listens and hands the console the hub it serves (its spec and
// hosts), and the console ends with the keeper.
func TestKeeperServesConsole(t *testing.T) {
	f := newFixture(t)
	sealer, _ := simSealer(t, 7)
	k := f.keeper(sealer)
	k.cfg.ConsoleListen = "127.0.0.1:0"
	got := make(chan string, 1)
	ended := make(chan struct{})
	k.cfg.Console = func(ctx context.Context, h *Hub, lis net.Listener) error {
		defer close(ended)
		got <- fmt.Sprintf("%s %v %s", h.Spec().Metadata.Name, h.Hosts(), lis.Addr())
		<-ctx.Done()
		return nil
	}
	stop := run(t, k)
	if k.ConsoleAddr() != "" {
		t.Fatal("a console address before the hub is served")
	}
	if _, err := k.TakeOver(context.Background(), "master", "master", "ops@admin", &f.handoff); err != nil {
		t.Fatal(err)
	}
	addr := k.ConsoleAddr()
	if g, want := <-got, "local [10.20.0.10] "+addr; addr == "" || g != want {
		t.Errorf("console given %q, want %q", g, want)
	}
	stop()
	select {
	case <-ended:
	default:
		t.Error("the console outlived the keeper")
	}
}
