package agent

import (
	"bytes"
	"fmt"
	"sync"

	"google.golang.org/grpc"
)

// hubLink is one connection to the hub shared by an enrolled node's
// periodic calls (planes every 10 s, revocations and observability every
// 30 s). A connection a call meant a TLS handshake each on both sides: on
// the master, sixteen nodes' worth was two mutual-TLS handshakes a second
// on one emulated CPU, the CPU that drives convergence. The hub checks the
// caller's certificate (validity, revocation) on every call, not only at
// the handshake, so reusing the connection takes nothing from that.
//
// The connection is made again when the hub moved (HubFile, the hand-over)
// or the node's certificate changed (a renewal), and after a call on it
// failed, so a hub that restarted is reached at the next call rather than
// after gRPC's reconnection backoff.
type hubLink struct {
	mu   sync.Mutex
	cc   *grpc.ClientConn
	addr string
	cert []byte // the leaf certificate cc authenticates with
}

// conn returns the connection for cfg's hub and certificate now, and done,
// to be called with the call's error.
func (l *hubLink) conn(cfg EnrollConfig) (*grpc.ClientConn, func(error), error) {
	pair, err := cfg.identity()
	if err != nil {
		return nil, nil, fmt.Errorf("node identity: %w", err)
	}
	addr := cfg.HubAddr()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cc == nil || l.addr != addr || !bytes.Equal(l.cert, pair.Certificate[0]) {
		l.closeLocked()
		cc, err := dialHub(addr, cfg.CA, &pair)
		if err != nil {
			return nil, nil, err
		}
		l.cc, l.addr, l.cert = cc, addr, pair.Certificate[0]
	}
	cc := l.cc
	return cc, func(err error) {
		if err != nil {
			l.drop(cc)
		}
	}, nil
}

// drop closes cc if it is still the shared connection.
func (l *hubLink) drop(cc *grpc.ClientConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cc == cc {
		l.closeLocked()
	}
}

// Close closes the shared connection.
func (l *hubLink) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeLocked()
}

// closeLocked closes the shared connection, if any; l.mu is held.
func (l *hubLink) closeLocked() {
	if l.cc != nil {
		l.cc.Close()
		l.cc = nil
	}
}

// hubConn is a connection for one call to the hub as this node: cfg's
// shared link when it has one, else a connection of its own that done
// closes.
func hubConn(cfg EnrollConfig) (*grpc.ClientConn, func(error), error) {
	if cfg.link != nil {
		return cfg.link.conn(cfg)
	}
	cc, err := dialHubAsNode(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cc, func(error) { cc.Close() }, nil
}
