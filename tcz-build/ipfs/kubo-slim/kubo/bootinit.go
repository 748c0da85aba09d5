package kubo

// tce-ipfs: `ipfs daemon --init --init-config FILE` where FILE holds only the settings to change
// (no Identity.PrivKey) makes a repo in the daemon's own process: a fresh identity, kubo's default
// config, the --init-profile profiles, then FILE's keys on top. The tce-ipfs boot hook uses it to
// start kubo once instead of twice (`ipfs init`, then the daemon): under QEMU TCG each start of
// kubo costs about a second. Unlike `ipfs init`, no empty directory is pinned (that builds a whole
// offline node first). A FILE with Identity.PrivKey (a whole config) takes kubo's own path.

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	cmds "github.com/ipfs/go-ipfs-cmds"
	config "github.com/ipfs/kubo/config"
	options "github.com/ipfs/kubo/core/coreiface/options"
	fsrepo "github.com/ipfs/kubo/repo/fsrepo"
)

func tceOverlayInit(req *cmds.Request, repoRoot string) error {
	location, _ := req.Options[initConfigOptionKwd].(string)
	if location == "" {
		return nil
	}
	data, err := os.ReadFile(location)
	if err != nil {
		return err
	}
	var probe struct{ Identity struct{ PrivKey string } }
	if err := json.Unmarshal(data, &probe); err != nil {
		return fmt.Errorf("%s: %w", location, err)
	}
	if probe.Identity.PrivKey != "" {
		return nil
	}
	identity, err := config.CreateIdentity(io.Discard, []options.KeyGenerateOption{
		options.Key.Type(algorithmDefault),
	})
	if err != nil {
		return err
	}
	conf, err := config.InitWithIdentity(identity)
	if err != nil {
		return err
	}
	profiles, _ := req.Options[initProfileOptionKwd].(string)
	if err := applyProfiles(conf, profiles); err != nil {
		return err
	}
	// encoding/json fills a struct in place: keys absent from FILE keep their values.
	if err := json.Unmarshal(data, conf); err != nil {
		return fmt.Errorf("%s: %w", location, err)
	}
	conf.Identity = identity
	if err := checkWritable(repoRoot); err != nil {
		return err
	}
	return fsrepo.Init(repoRoot, conf)
}
