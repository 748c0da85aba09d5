"""The agent on a booted Tiny Core machine (``tce-ipfs install|status|seed|unseed``).

Runs inside the guest from ``tce-ipfs-agent.tcz`` (on ``python3.11.tcz``). It may import only the
standard library, ``ipfshttpclient`` (vendored) and ``tce_ipfs.{errors,proc,tcrepo,ipfs.rpc}`` -- never
a build-host module (tests/test_layering.py checks it). It talks to the machine's own kubo (left
running by the boot hook) through its RPC API on loopback, and hands extensions to Tiny Core's own
loader (``tce-load -i``).

* ``machine``: where things are on a TC system (tce dir, tc user, the booted repo CID, kernel), and the
  one place that runs external commands (through ``tce_ipfs.proc.run()``);
* ``ops``: ``install``, ``status``, ``seed``, ``unseed``.
"""
