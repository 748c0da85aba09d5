// Package client stands in for p2p-forge's AutoTLS client in the tce-ipfs build of kubo.
//
// AutoTLS registers the node with a public service (registration.libp2p.direct) and gets a
// Let's Encrypt certificate for Secure WebSockets, so that browsers can dial it. A Tiny Core node
// never calls out to public services and has no WebSocket transport, and the ACME client
// (certmagic, acmez) costs about 0.35 MiB of ipfs.tcz. kubo's AutoTLS default is off in this build;
// a config that turns it on gets an error from NewP2PForgeCertMgr saying why.
//
// The constants keep upstream's values: kubo's config and DNS resolver read them.
package client

import (
	"crypto/tls"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"
)

const (
	DefaultForgeDomain   = "libp2p.direct"
	DefaultForgeEndpoint = "https://registration.libp2p.direct"
	DefaultCAEndpoint    = "https://acme-v02.api.letsencrypt.org/directory"
	ForgeAuthEnv         = "FORGE_ACCESS_TOKEN"
)

var errNoAutoTLS = errors.New("AutoTLS is not in this build of kubo (tce-ipfs): set AutoTLS.Enabled to false")

// P2PForgeCertMgr is never constructed: NewP2PForgeCertMgr fails.
type P2PForgeCertMgr struct{}

// P2PForgeCertMgrOptions configure nothing.
type P2PForgeCertMgrOptions func(*P2PForgeCertMgr) error

func ignore(*P2PForgeCertMgr) error { return nil }

func WithForgeDomain(string) P2PForgeCertMgrOptions               { return ignore }
func WithForgeRegistrationEndpoint(string) P2PForgeCertMgrOptions { return ignore }
func WithCAEndpoint(string) P2PForgeCertMgrOptions                { return ignore }
func WithCertificateStorage(any) P2PForgeCertMgrOptions           { return ignore }
func WithForgeAuth(string) P2PForgeCertMgrOptions                 { return ignore }
func WithUserAgent(string) P2PForgeCertMgrOptions                 { return ignore }
func WithRegistrationDelay(time.Duration) P2PForgeCertMgrOptions  { return ignore }
func WithShortForgeAddrs(bool) P2PForgeCertMgrOptions             { return ignore }
func WithLogger(*zap.SugaredLogger) P2PForgeCertMgrOptions        { return ignore }

// NewP2PForgeCertMgr always fails: AutoTLS is not compiled in.
func NewP2PForgeCertMgr(...P2PForgeCertMgrOptions) (*P2PForgeCertMgr, error) {
	return nil, errNoAutoTLS
}

func (*P2PForgeCertMgr) ProvideHost(host.Host)  {}
func (*P2PForgeCertMgr) Start() error           { return errNoAutoTLS }
func (*P2PForgeCertMgr) Stop()                  {}
func (*P2PForgeCertMgr) TLSConfig() *tls.Config { return nil }

// AddressFactory passes addresses through unchanged.
func (*P2PForgeCertMgr) AddressFactory() func([]multiaddr.Multiaddr) []multiaddr.Multiaddr {
	return func(addrs []multiaddr.Multiaddr) []multiaddr.Multiaddr { return addrs }
}
