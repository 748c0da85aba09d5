//go:build go1.25

package decision

// Tests of the tce-ipfs super-seeding hold (tce_superseed.go), on the engine's own test harness.

import (
	"context"
	"fmt"
	"testing"
	"time"

	message "github.com/ipfs/boxo/bitswap/message"
	pb "github.com/ipfs/boxo/bitswap/message/pb"
	blockstore "github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/ipfs/go-test/random"
	peer "github.com/libp2p/go-libp2p/core/peer"
	libp2ptest "github.com/libp2p/go-libp2p/core/test"
)

const superSeedTestWait = 200 * time.Millisecond

func superSeedEngine(t *testing.T, neighbours func(holder, asker peer.ID) bool) (*Engine, *outbox, []blocks.Block) {
	t.Helper()
	bs := blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	blks := random.BlocksOfSize(4, 8*1024)
	if err := bs.PutMany(context.Background(), blks); err != nil {
		t.Fatal(err)
	}
	e := newEngineForTesting(bs, &fakePeerTagger{}, "localhost", 0, WithScoreLedger(NewTestScoreLedger(shortTerm, nil)),
		WithSuperSeed(neighbours, superSeedTestWait))
	t.Cleanup(e.Close)
	return e, &outbox{e: e}, blks
}

func wantOne(e *Engine, p peer.ID, c cid.Cid, typ pb.Message_Wantlist_WantType, sendDontHave bool) {
	msg := message.New(false)
	msg.AddEntry(c, 1, typ, sendDontHave)
	e.MessageReceived(context.Background(), p, msg)
}

// cancelOne: p cancels its want for c, as a bitswap client does at every peer it asked once the
// block is in (also at the peer that sent it).
func cancelOne(e *Engine, p peer.ID, c cid.Cid) {
	msg := message.New(false)
	msg.Cancel(c)
	e.MessageReceived(context.Background(), p, msg)
}

// outbox reads the engine's envelopes one by one, keeping a pending one-time channel between reads.
type outbox struct {
	e    *Engine
	next envChan
}

// within: the next envelope (marked sent) if one comes within d, else nil.
func (o *outbox) within(d time.Duration) *Envelope {
	var env *Envelope
	o.next, env = getNextEnvelope(o.e, o.next, d)
	if env != nil {
		env.Sent()
	}
	return env
}

func expectBlock(t *testing.T, env *Envelope, p peer.ID, c cid.Cid) {
	t.Helper()
	if env == nil || env.Peer != p || len(env.Message.Blocks()) != 1 || !env.Message.Blocks()[0].Cid().Equals(c) {
		t.Fatalf("expected block %s for %s, got %s", c, p, describe(env))
	}
}

func expectPresence(t *testing.T, env *Envelope, p peer.ID, c cid.Cid, typ pb.Message_BlockPresenceType) {
	t.Helper()
	if env == nil || env.Peer != p || len(env.Message.Blocks()) != 0 {
		t.Fatalf("expected only a presence for %s, got %s", p, describe(env))
	}
	bp := env.Message.BlockPresences()
	if len(bp) != 1 || !bp[0].Cid.Equals(c) || bp[0].Type != typ {
		t.Fatalf("expected %v for %s, got %+v", typ, c, bp)
	}
}

func describe(env *Envelope) string {
	if env == nil {
		return "nothing"
	}
	return fmt.Sprintf("to %s: %d block(s), presences %+v", env.Peer, len(env.Message.Blocks()), env.Message.BlockPresences())
}

func always(holder, asker peer.ID) bool { return true }

func TestSuperSeedHoldsBackThenServesAfterTheWait(t *testing.T) {
	e, o, blks := superSeedEngine(t, always)
	a, b := libp2ptest.RandPeerIDFatal(t), libp2ptest.RandPeerIDFatal(t)
	x := blks[0].Cid()

	wantOne(e, a, x, pb.Message_Wantlist_Block, true)
	expectBlock(t, o.within(time.Second), a, x) // the first asker is served
	cancelOne(e, a, x)                          // ... and has it
	wantOne(e, b, x, pb.Message_Wantlist_Block, true)
	expectPresence(t, o.within(time.Second), b, x, pb.Message_DontHave) // held back: a has it
	if env := o.within(superSeedTestWait / 2); env != nil {
		t.Fatalf("nothing expected before the wait, got %+v", env)
	}
	expectBlock(t, o.within(2*superSeedTestWait), b, x) // nobody delivered: served after all
	wantOne(e, b, x, pb.Message_Wantlist_Block, true)
	expectBlock(t, o.within(time.Second), b, x) // now a holder itself
}

func TestSuperSeedCancelMeansANeighbourDelivered(t *testing.T) {
	e, o, blks := superSeedEngine(t, always)
	a, b := libp2ptest.RandPeerIDFatal(t), libp2ptest.RandPeerIDFatal(t)
	x := blks[0].Cid()
	wantOne(e, a, x, pb.Message_Wantlist_Block, true)
	expectBlock(t, o.within(time.Second), a, x)
	wantOne(e, b, x, pb.Message_Wantlist_Block, true)
	expectPresence(t, o.within(time.Second), b, x, pb.Message_DontHave)
	cancel := message.New(false)
	cancel.Cancel(x)
	e.MessageReceived(context.Background(), b, cancel)
	if env := o.within(3 * superSeedTestWait); env != nil {
		t.Fatalf("the seed sent again what a neighbour delivered: %+v", env)
	}
	if got := e.superSeed.peers[b].delivered; got != 1 {
		t.Fatalf("delivered = %d, want 1", got)
	}
}

func TestSuperSeedWaitCountsFromWhenAHolderHasTheBlock(t *testing.T) {
	// Behind a slow uplink the holder's copy waits in our send queue and socket buffer: a wait
	// counted from the held request ran out before the holder had the block, and the seed sent it
	// again (1.5-2.9x the payload at 20 Mbit/s). Here a's send has not returned yet (its envelope's
	// Sent not called), then it has but a has not said it holds the block (no cancel yet).
	e, o, blks := superSeedEngine(t, always)
	a, b := libp2ptest.RandPeerIDFatal(t), libp2ptest.RandPeerIDFatal(t)
	x := blks[0].Cid()
	wantOne(e, a, x, pb.Message_Wantlist_Block, true)
	var toA *Envelope
	o.next, toA = getNextEnvelope(e, o.next, time.Second)
	expectBlock(t, toA, a, x)
	wantOne(e, b, x, pb.Message_Wantlist_Block, true)
	expectPresence(t, o.within(time.Second), b, x, pb.Message_DontHave)
	if env := o.within(3 * superSeedTestWait); env != nil {
		t.Fatalf("served again while the holder's copy had not left: %s", describe(env))
	}
	toA.Sent()
	if env := o.within(3 * superSeedTestWait); env != nil {
		t.Fatalf("served again while the holder's copy was on its way: %s", describe(env))
	}
	cancelOne(e, a, x) // a has it: the wait starts
	if env := o.within(superSeedTestWait / 2); env != nil {
		t.Fatalf("nothing expected before the wait, got %s", describe(env))
	}
	expectBlock(t, o.within(3*superSeedTestWait), b, x) // nobody delivered: served after all
}

func TestSuperSeedACopyThatLeftCountsAsDeliveredAfterInFlight(t *testing.T) {
	e, o, blks := superSeedEngine(t, always)
	e.superSeed.inFlight = 3 * superSeedTestWait
	a, b := libp2ptest.RandPeerIDFatal(t), libp2ptest.RandPeerIDFatal(t)
	x := blks[0].Cid()
	wantOne(e, a, x, pb.Message_Wantlist_Block, true)
	expectBlock(t, o.within(time.Second), a, x) // sent; a never cancels
	wantOne(e, b, x, pb.Message_Wantlist_Block, true)
	expectPresence(t, o.within(time.Second), b, x, pb.Message_DontHave)
	if env := o.within(2 * superSeedTestWait); env != nil {
		t.Fatalf("nothing expected within inFlight, got %s", describe(env))
	}
	expectBlock(t, o.within(3*superSeedTestWait), b, x)
}

func TestSuperSeedAnEarlierWavesHoldersDoNotShortenAHold(t *testing.T) {
	// A seed serves boot after boot: what a holder of an earlier wave did with a block (its cancel,
	// long ago) must not end a hold whose holders are this wave's machines.
	var a peer.ID
	aGone := false
	e, o, blks := superSeedEngine(t, func(holder, asker peer.ID) bool { return holder != a || !aGone })
	a = libp2ptest.RandPeerIDFatal(t)
	b, c := libp2ptest.RandPeerIDFatal(t), libp2ptest.RandPeerIDFatal(t)
	x := blks[0].Cid()
	wantOne(e, a, x, pb.Message_Wantlist_Block, true)
	expectBlock(t, o.within(time.Second), a, x)
	cancelOne(e, a, x)
	aGone = true                                      // the earlier wave has booted and left
	wantOne(e, b, x, pb.Message_Wantlist_Block, true) // no neighbour holds it: served, its send pending
	var toB *Envelope
	o.next, toB = getNextEnvelope(e, o.next, time.Second)
	expectBlock(t, toB, b, x)
	wantOne(e, c, x, pb.Message_Wantlist_Block, true)
	expectPresence(t, o.within(time.Second), c, x, pb.Message_DontHave)
	if env := o.within(3 * superSeedTestWait); env != nil {
		t.Fatalf("served again while this wave's holder had not got the block: %s", describe(env))
	}
	toB.Sent()
	cancelOne(e, b, x)
	expectBlock(t, o.within(3*superSeedTestWait), c, x)
}

func TestSuperSeedBroadcastWantHaveGetsAHaveAfterTheWait(t *testing.T) {
	e, o, blks := superSeedEngine(t, always)
	a, b := libp2ptest.RandPeerIDFatal(t), libp2ptest.RandPeerIDFatal(t)
	x := blks[0].Cid()
	wantOne(e, a, x, pb.Message_Wantlist_Have, false)
	expectPresence(t, o.within(time.Second), a, x, pb.Message_Have)
	wantOne(e, a, x, pb.Message_Wantlist_Block, false) // a's session then asks us for the block
	expectBlock(t, o.within(time.Second), a, x)
	cancelOne(e, a, x)
	wantOne(e, b, x, pb.Message_Wantlist_Have, false) // a broadcast want-have: no DONT_HAVE wanted
	if env := o.within(superSeedTestWait / 2); env != nil {
		t.Fatalf("a held-back broadcast want gets no answer at first, got %+v", env)
	}
	expectPresence(t, o.within(2*superSeedTestWait), b, x, pb.Message_Have)
}

func TestSuperSeedServesPeersThatAreNoNeighbours(t *testing.T) {
	e, o, blks := superSeedEngine(t, func(holder, asker peer.ID) bool { return false })
	a, b := libp2ptest.RandPeerIDFatal(t), libp2ptest.RandPeerIDFatal(t)
	x := blks[0].Cid()
	wantOne(e, a, x, pb.Message_Wantlist_Block, true)
	expectBlock(t, o.within(time.Second), a, x)
	wantOne(e, b, x, pb.Message_Wantlist_Block, true)
	expectBlock(t, o.within(time.Second), b, x)
}

func TestSuperSeedPausesForAPeerNobodyServesThenTriesAgain(t *testing.T) {
	e, o, blks := superSeedEngine(t, always)
	e.superSeed.grace = 0
	e.superSeed.pause = 3 * superSeedTestWait
	a, b := libp2ptest.RandPeerIDFatal(t), libp2ptest.RandPeerIDFatal(t)
	blks = append(blks, random.BlocksOfSize(2, 8*1024)...)
	for _, blk := range blks {
		if err := e.bsm.bs.Put(context.Background(), blk); err != nil {
			t.Fatal(err)
		}
	}
	for i, blk := range blks {
		x := blk.Cid()
		wantOne(e, a, x, pb.Message_Wantlist_Block, true)
		expectBlock(t, o.within(time.Second), a, x)
		cancelOne(e, a, x)
		wantOne(e, b, x, pb.Message_Wantlist_Block, true)
		switch {
		case i < superSeedMaxDeficit, i == superSeedMaxDeficit+2: // held back, then served after the wait
			expectPresence(t, o.within(time.Second), b, x, pb.Message_DontHave)
			expectBlock(t, o.within(2*superSeedTestWait), b, x)
		case i == superSeedMaxDeficit: // b trades with nobody: served at once for a while
			expectBlock(t, o.within(time.Second), b, x)
			time.Sleep(e.superSeed.pause) // the pause ends
		default:
			expectPresence(t, o.within(time.Second), b, x, pb.Message_DontHave)
			cancel := message.New(false) // ... and a neighbour delivers again
			cancel.Cancel(x)
			e.MessageReceived(context.Background(), b, cancel)
		}
	}
	e.PeerDisconnected(b)
	if _, ok := e.superSeed.peers[b]; ok {
		t.Fatal("state of a disconnected peer kept")
	}
}

func TestSuperSeedMissesInTheGracePeriodDoNotCount(t *testing.T) {
	e, o, blks := superSeedEngine(t, always)
	e.superSeed.grace = time.Hour // a peer that has not found its LAN neighbours yet
	a, b := libp2ptest.RandPeerIDFatal(t), libp2ptest.RandPeerIDFatal(t)
	for _, blk := range blks {
		x := blk.Cid()
		wantOne(e, a, x, pb.Message_Wantlist_Block, true)
		expectBlock(t, o.within(time.Second), a, x)
		cancelOne(e, a, x)
		wantOne(e, b, x, pb.Message_Wantlist_Block, true)
		expectPresence(t, o.within(time.Second), b, x, pb.Message_DontHave)
		expectBlock(t, o.within(2*superSeedTestWait), b, x)
	}
	if r := e.superSeed.peers[b]; r.missed != 0 || !r.pausedTo.IsZero() {
		t.Fatalf("misses counted in the grace period: %+v", r)
	}
}
