"""CLI command groups. Each module exposes ``register(subparsers, common_parent)``.

Handlers are thin: parse arguments, call library code, print with ``tce_ipfs.cli.emit``.
"""
