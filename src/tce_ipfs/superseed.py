"""The polite origin: a super-seeding patch for the seed role's kubo build (``kubo.SEED`` variant).

The problem: a lab of machines booting at once asks the seed for the same blocks at the same moment
(every machine fetches the same onboot closure). A stock bitswap server answers every request, so the
seed's uplink carries each block about once per machine, even though the machines are connected to
each other (mDNS) and could trade. Measured on the switched-LAN benchmark (16 machines, origin capped
at 100 Mbit/s): the origin sent 7.6 times the payload.

What kubo's settings can do (kubo v0.43.1 ``Internal.Bitswap``): worker counts,
``MaxOutstandingBytesPerPeer``, ``WantHaveReplaceSize``, provider search and the *client's* broadcast
control. None of them changes *which* requests a server answers. boxo's bitswap server has the hooks
(``WithPeerBlockRequestFilter``, ``WithTaskComparator``) but kubo exposes neither in its config, so a
small source patch is needed; it only adds one Go file and one line that passes the filter to
``bitswap.New`` (boxo itself is not patched).

The policy (BitTorrent's super-seeding, for bitswap):

* the first machine that asks for a block is granted it (it becomes a *holder*);
* another machine asking for that block while a holder is still connected to the seed and looks to
  be on the same LAN (a remote address in the same IPv4 /24 or IPv6 /64) is refused ONCE: it gets
  DONT_HAVE (or, for a broadcast want-have, no answer), exactly as for a block the seed lacks. Its
  bitswap session then asks its other peers; the holder announces the block (HAVE) to every peer
  whose want it holds as soon as it has it, and serves it over the LAN;
* a second request for the same block from the same machine is always served (and that machine
  becomes a holder too). So a machine whose peers cannot deliver (no mDNS, a slow or departed
  holder) loses one round trip, or at worst one idle rebroadcast of its bitswap session (~1 s),
  never the block. Nothing is withheld for good, and a single machine is never refused.

The seed build is used only where this project runs the seed (``tce-ipfs node``, the lab and the
benchmark seeds, the end-to-end seed); guests' ``ipfs.tcz`` is the plain build.
"""

from __future__ import annotations

FILE = "core/node/tce_superseed.go"

GO_SOURCE = """\
package node

// Polite origin: super-seeding for the bitswap server (added by tce-ipfs for its seed build; not part
// of upstream kubo). See tce_ipfs/superseed.py for the rationale and the measurements.
//
// The first peer asking for a block is granted it (a holder). Any other peer asking for it while a
// holder is connected and on the same LAN (remote address in the same IPv4 /24 or IPv6 /64) is
// refused once: boxo answers DONT_HAVE when the want asked for one (broadcast want-haves get no
// answer), so the peer fetches the block from its LAN peers, which announce it as soon as they have
// it. Its second request for the block is always served: nothing is ever withheld for good.

import (
	"net"
	"sync"

	"github.com/ipfs/boxo/bitswap"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"
)

type superSeed struct {
	net     network.Network
	mu      sync.Mutex
	holders map[cid.Cid][]peer.ID              // peers each block was granted to
	refused map[peer.ID]map[cid.Cid]struct{} // blocks refused once to a peer (its next ask is served)
	grants  uint64
	refuses uint64
}

func newSuperSeed(h host.Host) *superSeed {
	s := &superSeed{
		net:     h.Network(),
		holders: make(map[cid.Cid][]peer.ID),
		refused: make(map[peer.ID]map[cid.Cid]struct{}),
	}
	h.Network().Notify(&network.NotifyBundle{
		DisconnectedF: func(n network.Network, c network.Conn) {
			p := c.RemotePeer()
			if n.Connectedness(p) == network.Connected {
				return // another connection to the peer is still up
			}
			s.mu.Lock()
			delete(s.refused, p)
			s.mu.Unlock()
		},
	})
	return s
}

// lans: the LAN prefixes (IPv4 /24, IPv6 /64) of the addresses p is connected to us from.
func (s *superSeed) lans(p peer.ID) map[string]struct{} {
	out := make(map[string]struct{})
	for _, c := range s.net.ConnsToPeer(p) {
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

// allow is the bitswap server's PeerBlockRequestFilter: may peer p have block c now?
func (s *superSeed) allow(p peer.ID, c cid.Cid) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	holders := s.holders[c]
	for _, h := range holders {
		if h == p {
			s.grants++
			return true // granted before (and asked again: a lost block or a new session)
		}
	}
	var mine map[string]struct{}
	live := holders[:0] // filtered in place: holders that are still connected
	neighbour := false
	for _, h := range holders {
		if s.net.Connectedness(h) != network.Connected {
			continue // a holder that left can serve nobody: forget it
		}
		live = append(live, h)
		if neighbour {
			continue
		}
		if mine == nil {
			mine = s.lans(p)
		}
		for lan := range s.lans(h) {
			if _, ok := mine[lan]; ok {
				neighbour = true
				break
			}
		}
	}
	seen := s.refused[p]
	_, again := seen[c]
	if !neighbour || again {
		if again {
			delete(seen, c)
		}
		s.holders[c] = append(live, p)
		s.grants++
		return true
	}
	s.holders[c] = live
	if seen == nil {
		seen = make(map[cid.Cid]struct{})
		s.refused[p] = seen
	}
	seen[c] = struct{}{}
	s.refuses++
	if s.refuses%1000 == 1 {
		logger.Infof("super-seeding: %d grants, %d requests sent to LAN peers first", s.grants, s.refuses)
	}
	return false
}

func superSeedOption(h host.Host) bitswap.Option {
	return bitswap.WithPeerBlockRequestFilter(newSuperSeed(h).allow)
}
"""

# Where the filter is handed to bitswap: right before kubo builds its bitswap instance (with the host).
HOOK_FILE = "core/node/bitswap.go"
HOOK_OLD = "\t\tbs := bitswap.New("
HOOK_NEW = ("\t\tin.BitswapOpts = append(in.BitswapOpts, superSeedOption(in.Host)) // tce-ipfs seed build\n"
            + HOOK_OLD)
