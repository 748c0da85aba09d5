package decision

// Super-seeding for a seed's bitswap server (added by tce-ipfs to its seed build of kubo; not part of
// upstream boxo). A lab of machines booting at once asks the seed for the same blocks at the same
// moment. This engine sends each block to the first machine that asks (a holder) and holds it back
// from the others while a holder that is their LAN neighbour is connected: they get DONT_HAVE (a
// broadcast want-have: no answer) and fetch the block from the holder, which announces it to every
// peer whose want it holds as soon as it has it; their cancel then reaches us too (a delivery).
//
// Nothing is withheld for good: a want still in this engine's ledger after the wait (no neighbour
// delivered) is served after all, like a block that just arrived (a miss). The wait counts from when
// a holder has the block -- its cancel reaches us: a bitswap client cancels its want everywhere once
// the block is in, also at the peer that sent it -- not from the held request. Behind a slow uplink
// the holder's copy sits in our send queue and socket buffer for seconds (measured at 20 Mbit/s, 8
// machines: up to 2.8 s from our decision to the holder's cancel), and a wait counted from the
// request ran out before any holder had the block: the seed sent it again to the machines it held
// back (1.5-2.9x the payload). A copy that left us (its send returned) with no holder's cancel after
// inFlight is taken as delivered; a hold ends after superSeedMaxHold whatever happens. The wait adapts
// to how long neighbours take: 3x the average time from the holder having the block (or the hold, if
// later) to the asker's cancel, at least the configured wait, at most superSeedMaxWait.
//
// A peer that trades with nobody (mDNS off, or not found yet) would lose a wait per round. So: after
// a grace period from its first request (time for LAN discovery), a peer whose misses exceed its
// deliveries by superSeedMaxDeficit rounds is served directly for a while (4 s, doubling while it
// keeps missing, at most a minute); then holding is tried again. Any delivery ends the doubling.

import (
	"context"
	"slices"
	"sync"
	"time"

	bsmsg "github.com/ipfs/boxo/bitswap/message"
	pb "github.com/ipfs/boxo/bitswap/message/pb"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-peertaskqueue/peertask"
	"github.com/libp2p/go-libp2p/core/peer"
)

const (
	superSeedMaxWait    = 5 * time.Second
	superSeedMaxHold    = 15 * time.Second // from the held request, however long the holder's copy is queued
	superSeedMaxDeficit = 3                // rounds served after the wait, beyond blocks neighbours delivered
	superSeedGrace      = 3 * time.Second
	superSeedPause      = 4 * time.Second
	superSeedMaxPause   = time.Minute
)

type superSeedPeer struct {
	firstSeen time.Time
	delivered int       // held-back blocks that came from neighbours (cancelled in time)
	missed    int       // rounds of held-back blocks we served after the wait
	lastMiss  time.Time // releases within one wait count as one round
	pauses    int       // pauses in a row without a delivery
	pausedTo  time.Time // served directly until then
}

type superSeed struct {
	neighbours func(holder, asker peer.ID) bool // holder connected and on asker's LAN
	minWait    time.Duration
	grace      time.Duration // from a peer's first request: misses do not count yet
	pause      time.Duration // first pause of a peer that trades with nobody

	mu       sync.Mutex
	latency  time.Duration                     // average hold-to-cancel time (EWMA)
	holders  map[cid.Cid][]peer.ID             // peers each block was sent (or granted) to
	sentTo   map[cid.Cid]map[peer.ID]time.Time // when a holder's copy left us (its send returned)
	hasAt    map[cid.Cid]map[peer.ID]time.Time // when a holder cancelled its want (it has the block)
	inFlight time.Duration                     // a copy that left us counts as delivered after this
	held     map[peer.ID]map[cid.Cid]time.Time // blocks held back from a peer, since when
	peers    map[peer.ID]*superSeedPeer
	stats    struct{ served, heldBack, delivered, servedLate uint64 }
}

// WithSuperSeed makes the engine hold blocks back from peers that can get them from a LAN neighbour,
// for at least `wait` each time.
func WithSuperSeed(neighbours func(holder, asker peer.ID) bool, wait time.Duration) Option {
	return func(e *Engine) {
		e.superSeed = &superSeed{
			neighbours: neighbours,
			minWait:    wait,
			grace:      superSeedGrace,
			pause:      superSeedPause,
			latency:    wait / 3,
			holders:    make(map[cid.Cid][]peer.ID),
			sentTo:     make(map[cid.Cid]map[peer.ID]time.Time),
			hasAt:      make(map[cid.Cid]map[peer.ID]time.Time),
			inFlight:   superSeedMaxWait,
			held:       make(map[peer.ID]map[cid.Cid]time.Time),
			peers:      make(map[peer.ID]*superSeedPeer),
		}
	}
}

func (s *superSeed) peer(p peer.ID) *superSeedPeer {
	r := s.peers[p]
	if r == nil {
		r = &superSeedPeer{firstSeen: time.Now()}
		s.peers[p] = r
	}
	return r
}

func (s *superSeed) waitLocked() time.Duration {
	return min(max(3*s.latency, s.minWait), superSeedMaxWait)
}

// hold reports whether block c is held back from peer p now; wait > 0 when that starts a new hold
// (the caller schedules the release after wait).
func (s *superSeed) hold(p peer.ID, c cid.Cid) (hold bool, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, pending := s.held[p][c]; pending {
		return true, 0
	}
	for _, h := range s.holders[c] {
		if h == p {
			return false, 0
		}
	}
	neighbour := false
	if r := s.peer(p); time.Now().After(r.pausedTo) {
		for _, h := range s.holders[c] {
			if s.neighbours(h, p) {
				neighbour = true
				break
			}
		}
	}
	if !neighbour {
		s.holders[c] = append(s.holders[c], p)
		s.stats.served++
		return false, 0
	}
	m := s.held[p]
	if m == nil {
		m = make(map[cid.Cid]time.Time)
		s.held[p] = m
	}
	m[c] = time.Now()
	s.stats.heldBack++
	log.Debugw("super-seeding: held back", "peer", p, "cid", c, "wait", s.waitLocked())
	if s.stats.heldBack%1000 == 1 {
		log.Infow("super-seeding", "served", s.stats.served, "heldBack", s.stats.heldBack,
			"deliveredByPeers", s.stats.delivered, "servedAfterWait", s.stats.servedLate, "wait", s.waitLocked())
	}
	return true, s.waitLocked()
}

// note records in m when p did something with c (the first time only).
func note(m map[cid.Cid]map[peer.ID]time.Time, c cid.Cid, p peer.ID, at time.Time) {
	byPeer := m[c]
	if byPeer == nil {
		byPeer = make(map[peer.ID]time.Time)
		m[c] = byPeer
	}
	if _, ok := byPeer[p]; !ok {
		byPeer[p] = at
	}
}

// sent: the engine's send of msg to p returned (its envelope's Sent); its blocks have left us.
func (s *superSeed) sent(p peer.ID, msg bsmsg.BitSwapMessage) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range msg.Blocks() {
		note(s.sentTo, b.Cid(), p, now)
	}
}

// cancelled: p cancelled its want for c; if c was held back, a neighbour delivered it; if p is a
// holder, it has c now (from us or from a neighbour).
func (s *superSeed) cancelled(p peer.ID, c cid.Cid) {
	s.mu.Lock()
	defer s.mu.Unlock()
	since, pending := s.held[p][c]
	if !pending {
		if slices.Contains(s.holders[c], p) {
			note(s.hasAt, c, p, time.Now())
		}
		return
	}
	delete(s.held[p], c)
	log.Debugw("super-seeding: a neighbour delivered", "peer", p, "cid", c, "after", time.Since(since))
	r := s.peer(p)
	r.delivered++
	r.pauses = 0
	s.stats.delivered++
	if _, has, _ := s.nearLocked(p, c); has.After(since) {
		since = has
	}
	s.latency = (7*s.latency + time.Since(since)) / 8
}

// nearLocked: whether a holder of c is p's connected LAN neighbour, and among those the earliest
// time one had c (its cancel) and the earliest its copy left us (zero: not yet). Only such holders
// count: the same block's holders from an earlier boot wave are gone.
func (s *superSeed) nearLocked(p peer.ID, c cid.Cid) (near bool, has, sent time.Time) {
	for _, h := range s.holders[c] {
		if !s.neighbours(h, p) {
			continue
		}
		near = true
		if t, ok := s.hasAt[c][h]; ok && (has.IsZero() || t.Before(has)) {
			has = t
		}
		if t, ok := s.sentTo[c][h]; ok && (sent.IsZero() || t.Before(sent)) {
			sent = t
		}
	}
	return near, has, sent
}

// holdMoreLocked: how much longer the hold on (p, c), held since `since`, lasts: until the wait has
// passed since a holder that is p's neighbour has c (inFlight since its copy left us, if it has not
// said so; a quarter wait more while the copy has not left yet), while such a holder is connected,
// never beyond superSeedMaxHold from `since`; 0 when the hold is over.
func (s *superSeed) holdMoreLocked(p peer.ID, c cid.Cid, since, now time.Time) time.Duration {
	left := since.Add(superSeedMaxHold).Sub(now)
	near, has, sent := s.nearLocked(p, c)
	if left <= 0 || !near {
		return 0
	}
	if !has.IsZero() {
		return max(min(has.Add(s.waitLocked()).Sub(now), left), 0)
	}
	more := s.waitLocked() / 4 // no holder has said so yet: look again soon
	if !sent.IsZero() {
		more = min(more, sent.Add(s.inFlight).Sub(now))
	}
	return max(min(more, left), 0)
}

// forget drops a disconnected peer's state.
func (s *superSeed) forget(p peer.ID) {
	s.mu.Lock()
	delete(s.held, p)
	delete(s.peers, p)
	s.mu.Unlock()
}

// superSeedRelease runs when a hold on (p, c) expires: if p still wants c, queue it for p like a newly
// arrived block.
func (e *Engine) superSeedRelease(p peer.ID, c cid.Cid, blockSize int) {
	s := e.superSeed
	e.lock.RLock()
	ent, wanted := e.peerLedger.peers[p][c]
	e.lock.RUnlock()
	s.mu.Lock()
	since, pending := s.held[p][c]
	if !pending {
		s.mu.Unlock()
		return // cancelled (delivered by a neighbour), or the peer left
	}
	if more := s.holdMoreLocked(p, c, since, time.Now()); more > 0 && wanted {
		s.mu.Unlock() // the holders' copy left us too recently (or not yet): hold on
		time.AfterFunc(more, func() { e.superSeedRelease(p, c, blockSize) })
		return
	}
	delete(s.held[p], c)
	log.Debugw("super-seeding: wait over", "peer", p, "cid", c, "stillWanted", wanted)
	if wanted {
		r := s.peer(p)
		if now := time.Now(); now.Sub(r.lastMiss) > s.waitLocked()/2 && now.Sub(r.firstSeen) > s.grace {
			r.missed++
			r.lastMiss = now
			if r.missed-r.delivered >= superSeedMaxDeficit { // trades with nobody: pause holding
				r.pausedTo = now.Add(min(s.pause<<min(r.pauses, 8), superSeedMaxPause))
				r.pauses++
				r.missed = r.delivered
			}
		}
		s.stats.servedLate++
		s.holders[c] = append(s.holders[c], p)
	}
	s.mu.Unlock()
	if !wanted {
		return
	}
	if blockSize == 0 && ent.WantType == pb.Message_Wantlist_Block {
		// Asked as a want-have (size not read then), upgraded to a want-block since.
		sizes, err := e.bsm.getBlockSizes(context.Background(), []cid.Cid{c})
		if err != nil || sizes[c] == 0 {
			return
		}
		blockSize = sizes[c]
	}
	isWantBlock := blockSize != 0 && e.sendAsBlock(ent.WantType, blockSize)
	entrySize := blockSize
	if !isWantBlock {
		entrySize = bsmsg.BlockPresenceSize(c)
	}
	e.peerRequestQueue.PushTasksTruncated(e.maxQueuedWantlistEntriesPerPeer, p, peertask.Task{
		Topic:    c,
		Priority: int(ent.Priority),
		Work:     entrySize,
		Data: &taskData{
			BlockSize:    blockSize,
			HaveBlock:    true,
			IsWantBlock:  isWantBlock,
			SendDontHave: false,
		},
	})
	e.signalNewWork()
}
