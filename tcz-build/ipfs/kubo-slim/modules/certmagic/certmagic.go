// Package certmagic holds the three names kubo's AutoTLS set-up touches, so that kubo compiles
// without the ACME client. With AutoTLS not in the build (see ../p2p-forge) they are never used
// for anything but setting a logger.
package certmagic

import "go.uber.org/zap"

type Config struct{ Logger *zap.Logger }

type ACMEIssuer struct{ Logger *zap.Logger }

type FileStorage struct{ Path string }

var (
	Default     Config
	DefaultACME ACMEIssuer
)
