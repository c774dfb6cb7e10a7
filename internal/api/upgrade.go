package api

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
)

// BootState is what the ESP says about the node's boots.
type BootState struct {
	// Entry is the running build's UKI on the ESP.
	Entry string `json:"entry,omitempty"`
	// Trial: the running boot has not been marked good yet.
	Trial bool `json:"trial"`
	// OtherSlot is the build in the slot not running, when it has an entry.
	OtherSlot string `json:"otherSlot,omitempty"`
	// RolledBack lists newer builds that ran out of boot tries.
	RolledBack []string `json:"rolledBack,omitempty"`
	// LastCheck is why kubedosd last refused to mark a trial boot good.
	LastCheck string `json:"lastCheck,omitempty"`
	Error     string `json:"error,omitempty"`
}

// UpgradeChunk is one message of an upgrade stream. The first carries the
// build's manifest and signature (and Reboot); the rest carry Part (a file
// of the role: root.squashfs, root.verity, kubedos.efi) in order, at most
// UpgradeChunkBytes of Data each.
type UpgradeChunk struct {
	Manifest  []byte `json:"manifest,omitempty"`
	Signature []byte `json:"signature,omitempty"`
	Reboot    bool   `json:"reboot,omitempty"`
	Part      string `json:"part,omitempty"`
	Data      []byte `json:"data,omitempty"`
}

// UpgradeResult says what the node wrote (or, for a rollback, renamed).
type UpgradeResult struct {
	Node      string   `json:"node"`
	FromBuild string   `json:"fromBuild"`
	Build     string   `json:"build"`
	Slot      string   `json:"slot"`
	Entry     string   `json:"entry"`
	Bytes     int64    `json:"bytes,omitempty"`
	Steps     []string `json:"steps,omitempty"`
	Rebooting bool     `json:"rebooting"`
}

// RollbackRequest flips the node to its other slot.
type RollbackRequest struct {
	Reboot bool `json:"reboot"`
}

// UpgradeStream is the server side of Upgrade.
type UpgradeStream interface {
	Context() context.Context
	Recv() (*UpgradeChunk, error)
}

type upgradeStream struct{ grpc.ServerStream }

func (s upgradeStream) Recv() (*UpgradeChunk, error) {
	c := new(UpgradeChunk)
	if err := s.RecvMsg(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Upgrade streams a build's manifest, signature and role files (Parts, in
// order, read from open) to the node. sent is told the bytes sent so far.
func (c *NodeClient) Upgrade(ctx context.Context, manifest, signature []byte, reboot bool, parts []string,
	open func(part string) (io.ReadCloser, error), sent func(part string, n int64)) (*UpgradeResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.cc.NewStream(ctx, &upgradeDesc, nodeMethod("Upgrade"), grpc.ForceCodec(Codec))
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(&UpgradeChunk{Manifest: manifest, Signature: signature, Reboot: reboot}); err != nil {
		return nil, recvErr(st, err)
	}
	buf := make([]byte, UpgradeChunkBytes)
	var total int64
	for _, part := range parts {
		r, err := open(part)
		if err != nil {
			return nil, err
		}
		for {
			n, rerr := io.ReadFull(r, buf)
			if n > 0 {
				if err := st.SendMsg(&UpgradeChunk{Part: part, Data: buf[:n]}); err != nil {
					r.Close()
					return nil, recvErr(st, err)
				}
				total += int64(n)
				if sent != nil {
					sent(part, total)
				}
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				r.Close()
				return nil, rerr
			}
		}
		r.Close()
	}
	if err := st.CloseSend(); err != nil {
		return nil, err
	}
	res := new(UpgradeResult)
	if err := st.RecvMsg(res); err != nil {
		return nil, err
	}
	return res, nil
}

// recvErr turns a failed send into the server's own error: when the node
// refuses a payload it ends the stream, and the send only sees EOF.
func recvErr(st grpc.ClientStream, sendErr error) error {
	if errors.Is(sendErr, io.EOF) {
		if err := st.RecvMsg(new(UpgradeResult)); err != nil {
			return err
		}
	}
	return sendErr
}

func (c *NodeClient) Rollback(ctx context.Context, reboot bool) (*UpgradeResult, error) {
	return invoke[UpgradeResult](ctx, c.cc, nodeMethod("Rollback"), &RollbackRequest{Reboot: reboot})
}
