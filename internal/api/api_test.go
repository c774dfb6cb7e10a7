package api

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

type fakeHub struct{ AdminServer }

func (fakeHub) Begin(_ context.Context, r *BeginRequest) (*BeginResponse, error) {
	if r.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	return &BeginResponse{Session: "s-" + r.Name}, nil
}
func (fakeHub) Activate(context.Context, *ActivateRequest) (*ActivateResponse, error) {
	return &ActivateResponse{Nonce: []byte{1, 2, 3}, PCRs: []int{4, 7, 11}, ExpiresAt: time.Unix(10, 0).UTC()}, nil
}
func (fakeHub) Enroll(context.Context, *EnrollRequest) (*EnrollResponse, error) {
	return nil, status.Error(codes.PermissionDenied, "pcr-policy: PCR 11 differs")
}
func (fakeHub) RenewBegin(context.Context, *RenewBeginRequest) (*RenewBeginResponse, error) {
	return nil, status.Error(codes.Unauthenticated, "no certificate")
}
func (fakeHub) Renew(context.Context, *EnrollRequest) (*EnrollResponse, error) {
	return nil, status.Error(codes.Unauthenticated, "no certificate")
}
func (fakeHub) ListNodes(context.Context, *ListNodesRequest) (*ListNodesResponse, error) {
	return &ListNodesResponse{Nodes: []Node{{Name: "w-1", State: NodeEnrolled}}}, nil
}

func serve(t *testing.T) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(ServerOptions()...)
	RegisterEnrollment(s, fakeHub{})
	RegisterAdmin(s, fakeHub{})
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestRoundTrip(t *testing.T) {
	cc := serve(t)
	ctx := context.Background()
	en := NewEnrollmentClient(cc)
	b, err := en.Begin(ctx, &BeginRequest{Name: "w-1"})
	if err != nil || b.Session != "s-w-1" {
		t.Fatalf("Begin: %+v %v", b, err)
	}
	if _, err := en.Begin(ctx, &BeginRequest{}); !errors.Is(err, errdefs.ErrInvalid) || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Begin without name: %v", err)
	}
	a, err := en.Activate(ctx, &ActivateRequest{Session: b.Session})
	if err != nil || len(a.Nonce) != 3 || len(a.PCRs) != 3 || !a.ExpiresAt.Equal(time.Unix(10, 0)) {
		t.Fatalf("Activate: %+v %v", a, err)
	}
	_, err = en.Enroll(ctx, &EnrollRequest{Session: b.Session})
	if !errors.Is(err, errdefs.ErrPermission) || status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "PCR 11") {
		t.Fatalf("Enroll refusal lost its reason: %v", err)
	}
	nodes, err := NewAdminClient(cc).ListNodes(ctx)
	if err != nil || len(nodes.Nodes) != 1 || nodes.Nodes[0].Name != "w-1" {
		t.Fatalf("ListNodes: %+v %v", nodes, err)
	}
}

func TestCodecStrict(t *testing.T) {
	var r BeginRequest
	if err := Codec.Unmarshal([]byte(`{"name":"a","nmae":"b"}`), &r); err == nil {
		t.Fatal("unknown field accepted")
	}
	if err := Codec.Unmarshal(make([]byte, MaxMessageBytes+1), &r); err == nil {
		t.Fatal("oversized message accepted")
	}
}

func FuzzCodec(f *testing.F) {
	f.Add([]byte(`{"name":"a","role":"worker","identity":{"ekPublic":"AA==","ak":{}}}`))
	f.Add([]byte(`{"session":"s","nonce":"AQ==","evidence":{"pcrs":{"4":"00"}},"csr":"AA=="}`))
	f.Add([]byte(`{"unit":"chrony.service","lines":10,"since":"2026-05-06T07:08:09Z"}`))
	f.Add([]byte(`{"document":"{\"kind\":\"NodeConfig\"}","dryRun":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var a BeginRequest
		_ = Codec.Unmarshal(b, &a)
		var e EnrollRequest
		_ = Codec.Unmarshal(b, &e)
		var ac ActivateRequest
		_ = Codec.Unmarshal(b, &ac)
		var n NodeRequest
		_ = Codec.Unmarshal(b, &n)
		var au AuditRequest
		_ = Codec.Unmarshal(b, &au)
		var rk RegisterEKRequest
		_ = Codec.Unmarshal(b, &rk)
		var lr LogsRequest
		_ = Codec.Unmarshal(b, &lr)
		var ca ConfigApplyRequest
		_ = Codec.Unmarshal(b, &ca)
		var rs RestartServiceRequest
		_ = Codec.Unmarshal(b, &rs)
	})
}
