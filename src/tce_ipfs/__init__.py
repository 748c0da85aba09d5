"""tce-ipfs: content-addressed, peer-to-peer delivery of Tiny Core Linux extensions.

The package is laid out by where code runs (docs/ARCHITECTURE.md has the table of what may import
what; tests/test_layering.py enforces it):

* shared top-level modules (``errors``, ``proc``, ``log``, ``settings``, ``arch``, ``tcrepo``,
  ``cidtext``, ``bootcodes``) and the command line (``cli``, ``commands``);
* build host, product: ``build`` (kubo, .tcz, recipes), ``ipfs`` (node, publish, RPC), ``media``
  (P2P initrd, ISO, piCore, netboot);
* build host, test bed: ``testbed`` (QEMU guests, lab LAN, end-to-end, benchmarks), never shipped;
* booted TC: ``agent`` (plus ``errors``, ``proc``, ``tcrepo``, ``ipfs.rpc``), shipped as
  ``tce-ipfs-agent.tcz``;
* initrd: POSIX sh in ``initrd-hooks/`` at the top of the repository (never Python).
"""

__version__ = "0.1.0"
