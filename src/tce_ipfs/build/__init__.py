"""Build host: kubo per arch, ELF checks, .tcz packing, the recipe engine and what it needs.

Product code (`tce-ipfs kubo|tcz`). Imports only the shared top-level modules and ``build`` itself.
"""
