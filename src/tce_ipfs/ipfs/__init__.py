"""Talking to kubo: the isolated node, publishing a TC repo, swarm keys, the RPC wrapper.

``rpc`` also ships in ``tce-ipfs-agent.tcz`` (the agent imports it), so this ``__init__`` stays empty.
"""
