// Package namesys stands in for go-libp2p-pubsub-router (IPNS over pubsub, Ipns.UsePubsub) in the
// tce-ipfs build of kubo; see ../pubsub. IPNS names resolve through the DHT as before.
package namesys

import (
	"context"
	"errors"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/routing"
)

var errNoPubsub = errors.New("IPNS over pubsub is not in this build of kubo (tce-ipfs): set Ipns.UsePubsub to false")

// PubsubValueStore is never constructed: NewPubsubValueStore fails.
type PubsubValueStore struct{}

// Option configures nothing.
type Option func(*PubsubValueStore) error

// WithRebroadcastInterval is accepted and ignored.
func WithRebroadcastInterval(time.Duration) Option {
	return func(*PubsubValueStore) error { return nil }
}

// NewPubsubValueStore always fails: IPNS over pubsub is not compiled in.
func NewPubsubValueStore(context.Context, host.Host, *pubsub.PubSub, record.Validator, ...Option) (*PubsubValueStore, error) {
	return nil, errNoPubsub
}

// The routing.ValueStore methods; never reached.
func (*PubsubValueStore) PutValue(context.Context, string, []byte, ...routing.Option) error {
	return errNoPubsub
}

func (*PubsubValueStore) GetValue(context.Context, string, ...routing.Option) ([]byte, error) {
	return nil, errNoPubsub
}

func (*PubsubValueStore) SearchValue(context.Context, string, ...routing.Option) (<-chan []byte, error) {
	return nil, errNoPubsub
}
