package errdefs

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

var toCode = map[error]codes.Code{
	ErrInvalid:               codes.InvalidArgument,
	ErrNotFound:              codes.NotFound,
	ErrAlreadyExists:         codes.AlreadyExists,
	ErrPermission:            codes.PermissionDenied,
	ErrUnauthenticated:       codes.Unauthenticated,
	ErrPrecondition:          codes.FailedPrecondition,
	ErrExhausted:             codes.ResourceExhausted,
	ErrUnavailable:           codes.Unavailable,
	ErrInternal:              codes.Internal,
	context.Canceled:         codes.Canceled,
	context.DeadlineExceeded: codes.DeadlineExceeded,
}

var fromCode = func() map[codes.Code]error {
	m := make(map[codes.Code]error, len(toCode))
	for class, c := range toCode {
		m[c] = class
	}
	return m
}()

// ToGRPC turns err into a gRPC status whose code is err's class and whose
// message is err's text. A status passes through unchanged.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(toCode[Class(err)], err.Error())
}

// remote is an error that came back over gRPC: the server's message, the
// class its code stands for.
type remote struct {
	code  codes.Code
	msg   string
	class error
}

func (e *remote) Error() string { return e.msg }
func (e *remote) Unwrap() error { return e.class }

// GRPCStatus keeps the code for callers (and retries) that still look at it.
func (e *remote) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }

// FromGRPC turns a gRPC status error back into an error of its class, so
// errors.Is(err, errdefs.ErrNotFound) works on the client side. Errors that
// are not statuses (a dial failure) pass through unchanged.
func FromGRPC(err error) error {
	if err == nil {
		return nil
	}
	var r *remote
	if errors.As(err, &r) {
		return err
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	class, known := fromCode[s.Code()]
	switch {
	case s.Code() == codes.Unknown:
		class = ErrInternal
	case !known:
		class = ErrUnavailable
	}
	return &remote{code: s.Code(), msg: s.Message(), class: class}
}

// UnaryServerInterceptor translates every handler error with ToGRPC.
func UnaryServerInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	return resp, ToGRPC(err)
}

// StreamServerInterceptor translates every stream handler error with ToGRPC.
func StreamServerInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return ToGRPC(h(srv, ss))
}

// UnaryClientInterceptor translates every call's error with FromGRPC.
func UnaryClientInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return FromGRPC(invoker(ctx, method, req, reply, cc, opts...))
}

// StreamClientInterceptor translates a stream's errors with FromGRPC: the
// one opening it and those of every send, receive and header read.
func StreamClientInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, FromGRPC(err)
	}
	return clientStream{s}, nil
}

// clientStream is a grpc.ClientStream whose errors come back classed. io.EOF
// (the stream's normal end) is no status and passes through unchanged.
type clientStream struct{ grpc.ClientStream }

func (s clientStream) SendMsg(m any) error { return FromGRPC(s.ClientStream.SendMsg(m)) }
func (s clientStream) RecvMsg(m any) error { return FromGRPC(s.ClientStream.RecvMsg(m)) }
func (s clientStream) CloseSend() error    { return FromGRPC(s.ClientStream.CloseSend()) }

func (s clientStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	return md, FromGRPC(err)
}
