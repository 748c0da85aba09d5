package pin

// tce-ipfs: `ipfs pin remote` (remotepin.go) is not in this build. pin.go shares two names with
// that file; they are defined here with the same values.

import logging "github.com/ipfs/go-log/v2"

var log = logging.Logger("core/commands/cmdenv")

const pinNameOptionName = "name"
