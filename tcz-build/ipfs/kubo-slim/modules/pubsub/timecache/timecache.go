// Package timecache keeps the two strategy names kubo's config maps Pubsub.SeenMessagesStrategy to.
package timecache

type Strategy uint8

const (
	Strategy_FirstSeen Strategy = iota
	Strategy_LastSeen
)
