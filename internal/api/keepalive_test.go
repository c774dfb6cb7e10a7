package api

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// slowHub answers ListNodes only when its context ends.
type slowHub struct{ fakeHub }

func (slowHub) ListNodes(ctx context.Context, _ *ListNodesRequest) (*ListNodesResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// blackhole forwards between a client and target until cut, then drops
// every byte both ways while keeping the sockets open: what a client sees
// of a machine that lost power (no FIN, no RST).
func blackhole(t *testing.T, target string) (addr string, cut *atomic.Bool) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	cut = &atomic.Bool{}
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if err != nil {
				return
			}
			if !cut.Load() {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
		}
	}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			go pipe(s, c)
			go pipe(c, s)
		}
	}()
	return lis.Addr().String(), cut
}

// TestKeepaliveNoticesSilentPeer: a call in flight to a peer that goes
// silent fails within the keepalive time and timeout instead of hanging
// (kubedos node upgrade to a VM killed mid-write did).
func TestKeepaliveNoticesSilentPeer(t *testing.T) {
	oldTime, oldTimeout := KeepaliveTime, KeepaliveTimeout
	KeepaliveTime, KeepaliveTimeout = 10*time.Second, time.Second // gRPC's floor is 10 s
	t.Cleanup(func() { KeepaliveTime, KeepaliveTimeout = oldTime, oldTimeout })

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(ServerOptions()...)
	RegisterAdmin(s, slowHub{})
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	addr, cut := blackhole(t, lis.Addr().String())
	cc, err := grpc.NewClient(addr, append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	done := make(chan error, 1)
	go func() {
		_, err := NewAdminClient(cc).ListNodes(context.Background()) // no deadline, as a long upgrade has none
		done <- err
	}()
	time.Sleep(500 * time.Millisecond) // the call is in flight
	cut.Store(true)
	select {
	case err := <-done:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("call to a silent peer: %v, want Unavailable", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a call to a silent peer still hangs after a minute")
	}
}
