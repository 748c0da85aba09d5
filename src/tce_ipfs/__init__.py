"""tce-ipfs: content-addressed, peer-to-peer delivery of Tiny Core Linux extensions.

Where each part runs (so the tree says it, not only the docs):

* build host  -- everything under ``tce_ipfs`` except ``tce_ipfs.agent``: kubo builds, .tcz packing,
  publishing, initrd/ISO/netboot assembly, QEMU guests, demo and benchmarks.
* initrd      -- POSIX sh in ``initrd-hooks/`` at the top of the repository (never Python).
* booted TC   -- ``tce_ipfs.agent`` (plus the dependency-free helpers it imports: ``errors``,
  ``tcrepo``, ``rpc``), shipped as ``tce-ipfs-agent.tcz``.
"""

__version__ = "0.1.0"
