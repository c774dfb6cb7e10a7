package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"

	"github.com/kubedos/kubedos/internal/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// unary builds a method descriptor for a handler on the service's interface
// type S: the hand-written equivalent of protoc's generated glue.
func unary[S any, Req any, Resp any](service, name string, call func(S, context.Context, *Req) (*Resp, error)) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			req := new(Req)
			if err := dec(req); err != nil {
				return nil, err
			}
			if ic == nil {
				return call(srv.(S), ctx, req)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + service + "/" + name}
			return ic(ctx, req, info, func(ctx context.Context, r any) (any, error) { return call(srv.(S), ctx, r.(*Req)) })
		},
	}
}

// invoke calls a unary method with the kubedos codec.
func invoke[Resp any](ctx context.Context, cc grpc.ClientConnInterface, method string, req any) (*Resp, error) {
	out := new(Resp)
	if err := cc.Invoke(ctx, method, req, out, grpc.ForceCodec(Codec)); err != nil {
		return nil, err
	}
	return out, nil
}

// ServerOptions are the options every kubedos gRPC server needs.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodec(Codec), grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes),
		// Allow the clients' keepalive pings (gRPC's default refuses
		// pings more often than every 5 minutes).
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveTime / 2, PermitWithoutStream: true})}
}

// KeepaliveTime is how long a client waits without hearing from the
// server during a call before it pings; KeepaliveTimeout how long it then
// waits for an answer before it gives the connection up. A node that loses
// power mid-upgrade sends no reset: without pings the client would wait
// for ever.
var (
	KeepaliveTime    = 20 * time.Second
	KeepaliveTimeout = 15 * time.Second
)

// DialOptions are the options every kubedos gRPC client needs. Every call's
// error comes back through errdefs.FromGRPC: callers compare classes
// (errors.Is(err, errdefs.ErrNotFound)), never codes or message text.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.ForceCodec(Codec), grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout}),
		grpc.WithChainUnaryInterceptor(errdefs.UnaryClientInterceptor), grpc.WithChainStreamInterceptor(errdefs.StreamClientInterceptor)}
}

// Dial makes a client connection to addr over TLS with conf (mutual TLS
// when conf carries a certificate) and DialOptions. It connects lazily, on
// the first call.
func Dial(addr string, conf *tls.Config) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, append(DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(conf)))...)
}

// Serve runs srv on lis until ctx ends, then stops it gracefully (in-flight
// calls finish). A stop caused by ctx is not an error.
func Serve(ctx context.Context, srv *grpc.Server, lis net.Listener) error {
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			srv.GracefulStop()
		case <-done:
		}
	}()
	err := srv.Serve(lis)
	close(done)
	if errors.Is(err, grpc.ErrServerStopped) || ctx.Err() != nil {
		return nil
	}
	return err
}
