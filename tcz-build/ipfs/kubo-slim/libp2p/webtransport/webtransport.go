// Package libp2pwebtransport stands in for go-libp2p's WebTransport transport in the tce-ipfs build
// of kubo: browsers are not peers of a Tiny Core node. See ../quic for the pattern.
package libp2pwebtransport

import (
	"errors"

	"github.com/libp2p/go-libp2p/core/transport"
)

// New always fails: WebTransport is not compiled in.
func New() (transport.Transport, error) {
	return nil, errors.New("the WebTransport transport is not in this build of kubo (tce-ipfs, TCP only): " +
		"set Swarm.Transports.Network.WebTransport to false")
}
