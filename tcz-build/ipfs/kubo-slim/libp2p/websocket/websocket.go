// Package websocket stands in for go-libp2p's WebSocket transport in the tce-ipfs build of kubo
// (browsers are not peers of a Tiny Core node; without it AutoTLS has nothing to secure either).
// See ../quic for the pattern.
package websocket

import (
	"crypto/tls"
	"errors"

	"github.com/libp2p/go-libp2p/core/transport"
)

// Option is accepted for kubo's call with a TLS config; there is nothing to configure.
type Option func() error

// WithTLSConfig is a no-op: there is no WebSocket listener to secure.
func WithTLSConfig(*tls.Config) Option { return func() error { return nil } }

// New always fails: WebSocket is not compiled in.
func New(...Option) (transport.Transport, error) {
	return nil, errors.New("the WebSocket transport is not in this build of kubo (tce-ipfs, TCP only): " +
		"set Swarm.Transports.Network.Websocket to false")
}
