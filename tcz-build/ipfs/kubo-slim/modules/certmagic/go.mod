// tce-ipfs: stands in for github.com/caddyserver/certmagic (the ACME client behind AutoTLS).
module github.com/caddyserver/certmagic

go 1.25
