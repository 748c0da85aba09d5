// Package libp2pquic stands in for go-libp2p's QUIC transport in the tce-ipfs build of kubo.
//
// A Tiny Core node talks to its peers over TCP only; the QUIC stack (quic-go) costs about 0.6 MiB
// of ipfs.tcz. kubo's QUIC default is off in this build, so this constructor only runs when a
// config sets Swarm.Transports.Network.QUIC=true, and then the node refuses to start with a
// message that says why.
package libp2pquic

import (
	"errors"

	"github.com/libp2p/go-libp2p/core/transport"
)

// NewTransport always fails: QUIC is not compiled in.
func NewTransport() (transport.Transport, error) {
	return nil, errors.New("the QUIC transport is not in this build of kubo (tce-ipfs, TCP only): " +
		"set Swarm.Transports.Network.QUIC to false")
}
