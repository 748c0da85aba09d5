// tce-ipfs: stands in for github.com/libp2p/go-libp2p-pubsub-router (IPNS over pubsub).
module github.com/libp2p/go-libp2p-pubsub-router

go 1.25
