package api

import (
	"bytes"
	"context"
	"errors"
	"net"

	"google.golang.org/grpc"
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
	return []grpc.ServerOption{grpc.ForceServerCodec(Codec), grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes)}
}

// DialOptions are the options every kubedos gRPC client needs.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.ForceCodec(Codec), grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes))}
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
