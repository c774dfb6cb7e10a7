package errdefs

import (
	"context"
	"errors"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"
)

// errNoSuchNode is what the test service's handlers fail with.
var errNoSuchNode = New(ErrNotFound, "no node w-9")

// serve runs a service with one unary and one server-streaming method over
// an in-memory listener, both through the server interceptors, and returns
// a connection made with the client interceptors. The stream sends one
// message, then fails with errNoSuchNode.
func serve(t *testing.T) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 16)
	srv := grpc.NewServer(grpc.UnaryInterceptor(UnaryServerInterceptor), grpc.StreamInterceptor(StreamServerInterceptor))
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.T",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Get", Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(emptypb.Empty)); err != nil {
				return nil, err
			}
			h := func(context.Context, any) (any, error) { return nil, errNoSuchNode }
			return ic(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/test.T/Get"}, h)
		}}},
		Streams: []grpc.StreamDesc{{StreamName: "Watch", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			if err := ss.RecvMsg(new(emptypb.Empty)); err != nil {
				return err
			}
			if err := ss.SendMsg(new(emptypb.Empty)); err != nil {
				return err
			}
			return errNoSuchNode
		}}},
	}, struct{}{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(UnaryClientInterceptor), grpc.WithChainStreamInterceptor(StreamClientInterceptor))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestClientInterceptors(t *testing.T) {
	cc := serve(t)
	ctx := context.Background()

	err := cc.Invoke(ctx, "/test.T/Get", new(emptypb.Empty), new(emptypb.Empty))
	if !errors.Is(err, ErrNotFound) || err.Error() != errNoSuchNode.Error() {
		t.Errorf("unary call: %v; want ErrNotFound %q", err, errNoSuchNode)
	}

	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/test.T/Watch")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(new(emptypb.Empty)); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := st.RecvMsg(new(emptypb.Empty)); err != nil {
		t.Fatalf("first message: %v", err)
	}
	err = st.RecvMsg(new(emptypb.Empty))
	if !errors.Is(err, ErrNotFound) || err.Error() != errNoSuchNode.Error() {
		t.Errorf("stream end: %v; want ErrNotFound %q", err, errNoSuchNode)
	}
}
