"""The polite origin: super-seeding for the seed role's kubo build (``kubo.ensure(..., variant=kubo.SEED)``).

The problem: a lab of machines booting at once asks the seed for the same blocks at the same moment
(every machine fetches the same onboot closure). A stock bitswap server answers every request, so the
seed's uplink carries each block about once per machine, although the machines are connected to each
other (mDNS) and could trade. Measured with ``tce-ipfs bench --only fetch-link`` (16 machines, origin
capped at 100 Mbit/s): a stock kubo seed sent 7.6 times the payload.

What kubo's settings can do (v0.43.1 ``Internal.Bitswap``): worker counts, ``MaxOutstandingBytesPerPeer``,
``WantHaveReplaceSize``, provider search and the *client's* broadcast control. None changes *which*
requests a server answers, or when. boxo's server has a request filter
(``WithPeerBlockRequestFilter``), but a refused want is dropped: a broadcast want-have that gets no
answer is never sent again by the client (its peer manager de-duplicates), so a machine whose LAN
peers cannot deliver waits until the gateway gives up (504) -- measured, not a guess. Hence a small
patch to the engine itself, which keeps the want in its ledger and can answer it later.

The policy (``tcz-build/ipfs/kubo-seed/boxo_superseed.go``, hooked into boxo's decision engine, which
the build vendors to patch it; ``kubo_superseed.go`` there passes it in from kubo, which knows the
peers' addresses):

* the first machine that asks for a block is served (it becomes a *holder*);
* another machine asking for it while a holder is connected and is its LAN neighbour (a remote
  address in the same IPv4 /24 or IPv6 /64) is *held back*: it gets DONT_HAVE (a broadcast want-have:
  no answer), exactly as for a block the seed lacks. Its want stays in the seed's ledger. Its bitswap
  session asks its other peers; the holder announces the block to every peer whose want it holds as
  soon as it has it and serves it over the LAN; the machine then cancels its want at the seed;
* a want still there after the wait is served after all, like a block that just arrived: nothing is
  withheld for good. The wait is ``TCE_IPFS_SUPERSEED_WAIT`` (default 1 s; ``0`` turns all of this
  off), longer when neighbours are slow (3x their average time to deliver, at most 5 s). It counts
  from when a holder *has* the block -- its cancel reaches the seed (a bitswap client cancels its
  want at every peer it asked once the block is in) -- not from the held request: behind a slow
  uplink the holder's copy waits in the seed's send queue and socket buffer for seconds (20 Mbit/s,
  8 machines: up to 2.8 s from the decision to the holder's cancel), and a wait counted from the
  request ran out first, so the seed sent the block again to the machines it held back (fetch-link at
  20 Mbit/s: 1.5-2.9x the payload once the hook fetched several files and blocks at once; 1.00x with
  this). A copy that left the seed (its send returned) counts as delivered after 5 s without any
  holder's cancel, and no hold lasts more than 15 s;
* a machine that trades with nobody (``ipfs.mdns=0``, or its neighbours not found yet) would lose a
  wait per round. Misses do not count for 3 s after its first request (time for mDNS to find the
  neighbours); after that, once its misses exceed its deliveries by three rounds it is served
  directly for 4 s (doubling while it keeps missing, at most a minute), then holding is tried again;
  any delivery ends the doubling. Measured cost for such a machine among trading ones: about 5 s
  once. A single machine is never held back.

Tests: ``boxo_superseed_test.go`` runs on boxo's own engine harness (``tests/test_kubo.py`` runs it
against the prepared source), the switched-LAN tests (``tests/test_lan_swarm.py``) and the four-guest
proof (``tests/test_seeding.py``) run the built seed.
"""

from __future__ import annotations

BOXO_MODULE = "github.com/ipfs/boxo"
GO_TEST_PACKAGE = f"{BOXO_MODULE}/bitswap/server/internal/decision"
_DECISION = "{boxo}/bitswap/server/internal/decision"  # {boxo}: where the build vendors boxo

# New files in the kubo source tree -> our file (tcz-build/ipfs/kubo-seed/) that holds them.
FILES: dict[str, str] = {
    f"{_DECISION}/tce_superseed.go": "boxo_superseed.go",
    f"{_DECISION}/tce_superseed_test.go": "boxo_superseed_test.go",
    "core/node/tce_superseed.go": "kubo_superseed.go",
}

# Edits of existing files: (path, old, new); each `old` must occur exactly once.
EDITS: tuple[tuple[str, str, str], ...] = (
    (f"{_DECISION}/engine.go",
     "\tscheduler *peerScheduler\n}\n",
     "\tscheduler *peerScheduler\n\n"
     "\t// superSeed (tce-ipfs seed build): hold blocks back from peers a LAN neighbour can serve.\n"
     "\tsuperSeed *superSeed\n}\n"),
    (f"{_DECISION}/engine.go",
     "\t\tif e.peerLedger.CancelWant(p, c) {\n\t\t\te.peerRequestQueue.Remove(c, p)\n\t\t}\n\t}\n",
     "\t\tif e.peerLedger.CancelWant(p, c) {\n\t\t\te.peerRequestQueue.Remove(c, p)\n\t\t}\n"
     "\t\tif e.superSeed != nil {\n\t\t\te.superSeed.cancelled(p, c)\n\t\t}\n\t}\n"),
    (f"{_DECISION}/engine.go",
     "\t\t\tsendDontHave(entry)\n\t\t\tcontinue\n\t\t}\n\t\t// The block was found, add it to the queue\n",
     "\t\t\tsendDontHave(entry)\n\t\t\tcontinue\n\t\t}\n"
     "\t\t// tce-ipfs seed build: a LAN neighbour holds it? Then answer as if missing, serve it later.\n"
     "\t\tif e.superSeed != nil {\n"
     "\t\t\tif hold, wait := e.superSeed.hold(p, c); hold {\n"
     "\t\t\t\tsendDontHave(entry)\n"
     "\t\t\t\tif wait > 0 {\n"
     "\t\t\t\t\ttime.AfterFunc(wait, func() { e.superSeedRelease(p, c, blockSize) })\n"
     "\t\t\t\t}\n"
     "\t\t\t\tcontinue\n"
     "\t\t\t}\n"
     "\t\t}\n"
     "\t\t// The block was found, add it to the queue\n"),
    (f"{_DECISION}/engine.go",
     "\te.peerLedger.PeerDisconnected(p)\n\te.scoreLedger.PeerDisconnected(p)\n}\n",
     "\te.peerLedger.PeerDisconnected(p)\n\te.scoreLedger.PeerDisconnected(p)\n"
     "\tif e.superSeed != nil {\n\t\te.superSeed.forget(p)\n\t}\n}\n"),
    (f"{_DECISION}/engine.go",
     "\t\t\t\te.peerRequestQueue.TasksDone(p, nextTasks...)\n\n\t\t\t\t// Signal the worker",
     "\t\t\t\te.peerRequestQueue.TasksDone(p, nextTasks...)\n"
     "\t\t\t\tif e.superSeed != nil { // tce-ipfs seed build: the blocks left us\n"
     "\t\t\t\t\te.superSeed.sent(p, msg)\n\t\t\t\t}\n\n\t\t\t\t// Signal the worker"),
    ("{boxo}/bitswap/server/server.go",
     "// WithTaskComparator configures custom task prioritization logic.\n",
     "// WithSuperSeed (tce-ipfs seed build) holds blocks back from peers a LAN neighbour can serve; see\n"
     "// decision.WithSuperSeed.\n"
     "func WithSuperSeed(neighbours func(holder, asker peer.ID) bool, wait time.Duration) Option {\n"
     "\to := decision.WithSuperSeed(neighbours, wait)\n"
     "\treturn func(bs *Server) {\n"
     "\t\tbs.engineOptions = append(bs.engineOptions, o)\n"
     "\t}\n"
     "}\n\n"
     "// WithTaskComparator configures custom task prioritization logic.\n"),
    ("core/node/bitswap.go",
     "\t\tbs := bitswap.New(",
     "\t\tin.BitswapOpts = append(in.BitswapOpts, superSeedOptions(in.Host)...) // tce-ipfs seed build\n"
     "\t\tbs := bitswap.New("),
)
