// Package pubsub stands in for go-libp2p-pubsub (gossipsub/floodsub) in the tce-ipfs build of kubo.
//
// Pubsub is off by default in kubo (Pubsub.Enabled, Ipns.UsePubsub) and a Tiny Core node uses
// neither `ipfs pubsub` nor IPNS over pubsub. The routers and their protobuf code cost about
// 0.35 MiB of ipfs.tcz (with ../pubsub-router). A config that turns pubsub on gets an error from
// the router constructors, so the daemon stops at start with a message that says why.
package pubsub

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p-pubsub/timecache"
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

var errNoPubsub = errors.New("pubsub is not in this build of kubo (tce-ipfs): " +
	"set Pubsub.Enabled and Ipns.UsePubsub to false")

// TimeCacheDuration keeps upstream's default (kubo reads it as the default Pubsub.SeenMessagesTTL).
const TimeCacheDuration = 120 * time.Second

// PubSub is never constructed: NewGossipSub and NewFloodSub fail.
type PubSub struct{}

// Option configures nothing.
type Option func(*PubSub) error

// Subscription and Message carry only what kubo's core API reads.
type Subscription struct{}

type Message struct {
	From, Data, Seqno []byte
	Topic             *string
}

// ValidatorEx and PeerMetadataStore have upstream's shapes, for kubo's seqno validator.
type ValidatorEx func(context.Context, peer.ID, *Message) int

type PeerMetadataStore interface {
	Get(context.Context, peer.ID) ([]byte, error)
	Put(context.Context, peer.ID, []byte) error
}

func ignore(*PubSub) error { return nil }

func WithMessageSigning(bool) Option                     { return ignore }
func WithSeenMessagesTTL(time.Duration) Option           { return ignore }
func WithSeenMessagesStrategy(timecache.Strategy) Option { return ignore }
func WithDiscovery(discovery.Discovery, ...any) Option   { return ignore }
func WithFloodPublish(bool) Option                       { return ignore }
func WithDefaultValidator(any, ...any) Option            { return ignore }

// NewBasicSeqnoValidator returns a validator nobody runs.
func NewBasicSeqnoValidator(PeerMetadataStore, *slog.Logger) ValidatorEx { return nil }

// NewFloodSub always fails: pubsub is not compiled in.
func NewFloodSub(context.Context, host.Host, ...Option) (*PubSub, error) { return nil, errNoPubsub }

// NewGossipSub always fails: pubsub is not compiled in.
func NewGossipSub(context.Context, host.Host, ...Option) (*PubSub, error) { return nil, errNoPubsub }

// The methods kubo's core API calls; never reached, as no PubSub exists.
func (*PubSub) GetTopics() []string                             { return nil }
func (*PubSub) ListPeers(string) []peer.ID                      { return nil }
func (*PubSub) Publish(string, []byte, ...any) error            { return errNoPubsub }
func (*PubSub) Subscribe(string, ...any) (*Subscription, error) { return nil, errNoPubsub }
func (*Subscription) Cancel()                                   {}
func (*Subscription) Next(context.Context) (*Message, error)    { return nil, errNoPubsub }
