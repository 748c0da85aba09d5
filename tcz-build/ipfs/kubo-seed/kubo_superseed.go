package node

// The seed build's super-seeding (tce-ipfs; not part of upstream kubo): see the engine side in
// boxo's bitswap/server/internal/decision/tce_superseed.go. Here: which peers are LAN neighbours
// (connected to us from the same IPv4 /24 or IPv6 /64), and how long a held-back block waits for
// them: TCE_IPFS_SUPERSEED_WAIT (a Go duration, default 1s; 0 turns super-seeding off).

import (
	"net"
	"os"
	"time"

	"github.com/ipfs/boxo/bitswap"
	"github.com/ipfs/boxo/bitswap/server"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"
)

const superSeedDefaultWait = time.Second

func lanPrefixes(n network.Network, p peer.ID) map[string]struct{} {
	out := make(map[string]struct{})
	for _, c := range n.ConnsToPeer(p) {
		ip, err := manet.ToIP(c.RemoteMultiaddr())
		if err != nil {
			continue
		}
		if v4 := ip.To4(); v4 != nil {
			out[v4.Mask(net.CIDRMask(24, 32)).String()] = struct{}{}
		} else {
			out[ip.Mask(net.CIDRMask(64, 128)).String()] = struct{}{}
		}
	}
	return out
}

func superSeedOptions(h host.Host) []bitswap.Option {
	wait := superSeedDefaultWait
	if v := os.Getenv("TCE_IPFS_SUPERSEED_WAIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			logger.Errorf("TCE_IPFS_SUPERSEED_WAIT=%q is not a duration; using %s", v, wait)
		} else {
			wait = d
		}
	}
	if wait <= 0 {
		logger.Info("super-seeding off (TCE_IPFS_SUPERSEED_WAIT)")
		return nil
	}
	n := h.Network()
	neighbours := func(holder, asker peer.ID) bool {
		if n.Connectedness(holder) != network.Connected {
			return false
		}
		mine := lanPrefixes(n, asker)
		for lan := range lanPrefixes(n, holder) {
			if _, ok := mine[lan]; ok {
				return true
			}
		}
		return false
	}
	return []bitswap.Option{bitswap.WithServerOption(server.WithSuperSeed(neighbours, wait))}
}
