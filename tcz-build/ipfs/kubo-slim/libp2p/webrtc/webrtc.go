// Package libp2pwebrtc stands in for go-libp2p's WebRTC-direct transport in the tce-ipfs build of
// kubo (it links the pion WebRTC stack, about 1 MiB of ipfs.tcz). See ../quic for the pattern.
package libp2pwebrtc

import (
	"errors"
	"net"

	"github.com/libp2p/go-libp2p/core/transport"
)

// ListenUDPFn is the type go-libp2p's config provides to the WebRTC transport; with no WebRTC
// transport nothing asks for it.
type ListenUDPFn func(network string, laddr *net.UDPAddr) (net.PacketConn, error)

// New always fails: WebRTC is not compiled in.
func New() (transport.Transport, error) {
	return nil, errors.New("the WebRTC-direct transport is not in this build of kubo (tce-ipfs, TCP only): " +
		"set Swarm.Transports.Network.WebRTCDirect to false")
}
