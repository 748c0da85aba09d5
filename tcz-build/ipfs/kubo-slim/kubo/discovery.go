package libp2p

// tce-ipfs: two machines that answer the same mDNS query hear each other's answer at the same
// moment, and both dial. With TCP port reuse (kubo's default, needed for hole punching) the two SYNs
// can meet and make ONE connection (a TCP simultaneous open) in which both ends are the dialer: the
// security handshake fails on both and the pair backs off (go-libp2p issue 2925). So a pair found by
// discovery dials one way first: the peer with the larger ID at once, the other only if no
// connection has come up after tceDiscoveryYield.

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Long enough for the other side's dial and handshake on a slow CPU, short next to a boot.
const tceDiscoveryYield = 2 * time.Second

// tceLeaveDialTo reports whether this node should leave the dial to p: p has the larger ID and
// connected (or the node stopped) within tceDiscoveryYield.
func tceLeaveDialTo(ctx context.Context, h host.Host, p peer.ID) bool {
	if h.ID() > p {
		return false
	}
	timer := time.NewTimer(tceDiscoveryYield)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return true
	case <-timer.C:
	}
	return h.Network().Connectedness(p) == network.Connected
}
