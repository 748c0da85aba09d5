// tce-ipfs: stands in for github.com/ipshipyard/p2p-forge (AutoTLS) in the slim kubo build.
module github.com/ipshipyard/p2p-forge

go 1.25
