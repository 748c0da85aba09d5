// Package quicreuse stands in for go-libp2p's shared QUIC socket manager in the tce-ipfs build of
// kubo. go-libp2p always constructs a ConnManager (the swarm depends on it, to order start and
// stop), so unlike the transport stubs this one must succeed: it is an inert value that owns no
// socket. Nothing calls the rest once QUIC, WebTransport and WebRTC are gone.
package quicreuse

import (
	"context"
	"errors"
	"net"

	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
)

var errNoQUIC = errors.New("QUIC is not in this build of kubo (tce-ipfs, TCP only)")

// ConnManager holds nothing: there are no QUIC sockets to share.
type ConnManager struct{}

// Option configures nothing.
type Option func(*ConnManager) error

func ignore(*ConnManager) error { return nil }

// ConnContext is accepted and ignored.
func ConnContext(func(context.Context, *quic.ClientInfo) (context.Context, error)) Option {
	return ignore
}

// VerifySourceAddress is accepted and ignored.
func VerifySourceAddress(func(net.Addr) bool) Option { return ignore }

// EnableMetrics is accepted and ignored.
func EnableMetrics(prometheus.Registerer) Option { return ignore }

// NewConnManager returns the inert manager.
func NewConnManager(quic.StatelessResetKey, quic.TokenGeneratorKey, ...Option) (*ConnManager, error) {
	return &ConnManager{}, nil
}

// Close has nothing to close.
func (*ConnManager) Close() error { return nil }

// SharedNonQUICPacketConn is never reached (only the WebRTC transport asks for it).
func (*ConnManager) SharedNonQUICPacketConn(string, *net.UDPAddr) (net.PacketConn, error) {
	return nil, errNoQUIC
}

// ToQuicMultiaddr is never reached (only QUIC listeners call it).
func ToQuicMultiaddr(net.Addr, quic.Version) (multiaddr.Multiaddr, error) { return nil, errNoQUIC }
