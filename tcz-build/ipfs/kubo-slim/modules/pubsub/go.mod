// tce-ipfs: stands in for github.com/libp2p/go-libp2p-pubsub in the slim kubo build.
module github.com/libp2p/go-libp2p-pubsub

go 1.25
