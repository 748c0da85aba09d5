"""Boot media: the cpio/initrd writer, the P2P initrd, boot loader configs, ISO, piCore, netboot.

Product code (`tce-ipfs initrd|remaster|netboot`). Imports the shared modules, ``build`` and ``media``.
"""
