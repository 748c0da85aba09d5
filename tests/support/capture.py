"""Packet capture for the fault suite (run inside a lab namespace): ``capture.py OUT.json``.

One ``AF_PACKET`` socket, not bound to an interface, sees every frame sent or received on every
interface of the namespace it runs in (the bridge, each veth end and tap). It counts frames per
(interface, kind, destination): IPv4 by destination address, ARP by the address asked for, IPv6 by
destination, anything else by EtherType. On SIGTERM it writes the counts to OUT.json. Standard
library only (it runs with the host's Python inside ``ip netns exec``); no tcpdump needed.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

ETH_P_ALL = 0x0003


def classify(frame: bytes) -> tuple[str, str, str]:
    """(kind, source, destination) of one Ethernet frame."""
    if len(frame) < 14:
        return "short", "", ""
    ethertype = int.from_bytes(frame[12:14], "big")
    payload = frame[14:]
    if ethertype == 0x8100 and len(frame) >= 18:  # one VLAN tag
        ethertype = int.from_bytes(frame[16:18], "big")
        payload = frame[18:]
    if ethertype == 0x0800 and len(payload) >= 20:
        proto = {6: "tcp", 17: "udp", 1: "icmp", 2: "igmp"}.get(payload[9], f"ip{payload[9]}")
        return f"ipv4/{proto}", str(ipaddress.IPv4Address(payload[12:16])), str(
            ipaddress.IPv4Address(payload[16:20]))
    if ethertype == 0x0806 and len(payload) >= 28:
        return "arp", str(ipaddress.IPv4Address(payload[14:18])), str(ipaddress.IPv4Address(payload[24:28]))
    if ethertype == 0x86DD and len(payload) >= 40:
        return "ipv6", str(ipaddress.IPv6Address(payload[8:24])), str(ipaddress.IPv6Address(payload[24:40]))
    return f"ether/{ethertype:04x}", "", ""


def main() -> int:
    out = Path(sys.argv[1])
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.settimeout(0.5)
    counts: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
    running = True

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    out.with_suffix(".ready").write_text("")
    while running:
        try:
            frame, addr = sock.recvfrom(65535)
        except TimeoutError:
            continue
        except InterruptedError:
            continue
        kind, src, dst = classify(frame)
        counts[(str(addr[0]), kind, src, dst)] += 1
    rows = [{"ifname": i, "kind": k, "src": s, "dst": d, "frames": n} for (i, k, s, d), n in counts.items()]
    out.write_text(json.dumps({"frames": sum(counts.values()), "flows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
