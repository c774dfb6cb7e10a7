package api

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
)

// NodeClient calls a node's API.
type NodeClient struct{ cc grpc.ClientConnInterface }

// NewNodeClient wraps a connection made with DialOptions and an operator
// client certificate, checking the node's certificate for its name.
func NewNodeClient(cc grpc.ClientConnInterface) *NodeClient { return &NodeClient{cc} }

func nodeMethod(name string) string { return "/" + NodeService + "/" + name }

func (c *NodeClient) Version(ctx context.Context) (*NodeVersion, error) {
	return invoke[NodeVersion](ctx, c.cc, nodeMethod("Version"), &NodeVersionRequest{})
}

func (c *NodeClient) Health(ctx context.Context) (*Health, error) {
	return invoke[Health](ctx, c.cc, nodeMethod("Health"), &HealthRequest{})
}

// HealthWithPods is Health with the node's pods (HealthRequest.Pods).
func (c *NodeClient) HealthWithPods(ctx context.Context) (*Health, error) {
	return invoke[Health](ctx, c.cc, nodeMethod("Health"), &HealthRequest{Pods: true})
}

func (c *NodeClient) Services(ctx context.Context) (*Services, error) {
	return invoke[Services](ctx, c.cc, nodeMethod("Services"), &ServicesRequest{})
}

func (c *NodeClient) RestartService(ctx context.Context, name string) (*Unit, error) {
	return invoke[Unit](ctx, c.cc, nodeMethod("RestartService"), &RestartServiceRequest{Name: name})
}

func (c *NodeClient) Logs(ctx context.Context, r *LogsRequest) (*Logs, error) {
	return invoke[Logs](ctx, c.cc, nodeMethod("Logs"), r)
}

// Follow streams journal entries to fn until ctx ends, fn returns an error,
// or the node ends the stream; the end of ctx is not an error.
func (c *NodeClient) Follow(ctx context.Context, r *LogsRequest, fn func(*LogEntry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.cc.NewStream(ctx, &followDesc, nodeMethod("Follow"), grpc.ForceCodec(Codec))
	if err != nil {
		return err
	}
	if err := st.SendMsg(r); err != nil {
		return err
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	for {
		e := new(LogEntry)
		if err := st.RecvMsg(e); err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

func (c *NodeClient) Dmesg(ctx context.Context, lines int) (*Dmesg, error) {
	return invoke[Dmesg](ctx, c.cc, nodeMethod("Dmesg"), &DmesgRequest{Lines: lines})
}

func (c *NodeClient) Reboot(ctx context.Context) (*Power, error) {
	return invoke[Power](ctx, c.cc, nodeMethod("Reboot"), &PowerRequest{})
}

func (c *NodeClient) Shutdown(ctx context.Context) (*Power, error) {
	return invoke[Power](ctx, c.cc, nodeMethod("Shutdown"), &PowerRequest{})
}

func (c *NodeClient) ConfigGet(ctx context.Context) (*NodeConfigDoc, error) {
	return invoke[NodeConfigDoc](ctx, c.cc, nodeMethod("ConfigGet"), &ConfigGetRequest{})
}

func (c *NodeClient) ConfigApply(ctx context.Context, document string, dryRun bool) (*ConfigApplied, error) {
	return invoke[ConfigApplied](ctx, c.cc, nodeMethod("ConfigApply"), &ConfigApplyRequest{Document: document, DryRun: dryRun})
}

func (c *NodeClient) Drift(ctx context.Context) (*Drift, error) {
	return invoke[Drift](ctx, c.cc, nodeMethod("Drift"), &DriftRequest{})
}

func (c *NodeClient) Planes(ctx context.Context) (*Planes, error) {
	return invoke[Planes](ctx, c.cc, nodeMethod("Planes"), &PlanesRequest{})
}
