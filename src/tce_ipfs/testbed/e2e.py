"""End to end: a host seed publishes a repo, a QEMU guest boots with ``tce=ipfs:<CID>`` and loads it.

Shared by ``tce-ipfs demo``, the end-to-end tests and the benchmarks, so all of them exercise exactly
the same path. The guest reaches the seed only through QEMU's restricted user network: a ``guestfwd``
maps ``10.0.2.100:4001`` in the guest to the seed's loopback swarm port on the host.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tce_ipfs.arch import Arch
from tce_ipfs.build import kubo, recipes, tcz
from tce_ipfs.ipfs import rpc
from tce_ipfs.ipfs.node import Node
from tce_ipfs.ipfs.publish import publish
from tce_ipfs.media import initrd
from tce_ipfs.testbed import guest, httpserve, qemu

log = logging.getLogger(__name__)

SEED_GUEST_IP = "10.0.2.100"  # where the seed appears inside the guest (QEMU guestfwd)
SEED_GUEST_PORT = 4001
SEED_GATEWAY_GUEST_PORT = 8081  # the seed's trustless gateway in the guest (ipfs.gateway=)
SENTINEL = qemu.SENTINEL


@dataclass
class GuestKit:
    """Everything needed to boot one arch with the P2P hook: base, kubo extension, hook initrd."""

    arch: Arch
    base: guest.GuestBase
    ipfs_tcz: Path
    hook_initrd: Path


def prepare_kit(arch: Arch, work: Path, *, flavour: str | None = None) -> GuestKit:
    """Build (or take from cache) the guest base, ``ipfs.tcz`` and the hook initrd for ``arch``
    (``flavour``: another Debian kernel flavour, see guest.ensure_base)."""
    kubo.ensure(arch)
    base = guest.ensure_base(arch, flavour=flavour)
    tcz_dir = work / f"tcz-{arch}"
    result = recipes.build("ipfs", arch, tcz_dir)
    hook = initrd.build_hook_initrd(arch, work / f"tce-ipfs-{arch}.gz", ipfs_tcz=result.tcz)
    return GuestKit(arch=arch, base=base, ipfs_tcz=result.tcz, hook_initrd=hook)


class Seed:
    """An isolated host kubo on loopback that publishes repos for guests."""

    def __init__(self, work: Path, *, extra_config: dict[str, Any] | None = None,
                 gateway: bool = False) -> None:
        """``gateway``: the node's gateway is a trustless one (CARs and raw blocks only, nothing
        fetched for others; ``isolation.trustless_gateway_config``), still on loopback: guests reach
        it through a guestfwd of :data:`SEED_GATEWAY_GUEST_PORT` (:meth:`net`)."""
        # The seed role's build (the polite origin), as `tce-ipfs node` runs it.
        seed_kubo = kubo.ensure(Arch.host(), variant=kubo.SEED)
        config = dict(extra_config or {})
        self.gateway = gateway
        if gateway:
            from tce_ipfs.ipfs.isolation import trustless_gateway_config

            config.update(trustless_gateway_config())
        self.node = Node(work / "seed", seed_kubo, extra_config=config)

    def __enter__(self) -> Seed:
        self.node.init()
        self.node.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.node.stop()

    def client(self, timeout: float = 300.0) -> Any:
        return self.node.client(timeout=timeout)

    def publish(self, repo: Path, *, check: bool = True) -> str:
        return publish(repo, self.client(), check=check, progress=False).root_cid

    @property
    def swarm_port(self) -> int:
        for addr in self.node.swarm_addrs:
            m = re.search(r"/tcp/(\d+)", addr)
            if m:
                return int(m.group(1))
        raise RuntimeError("seed has no TCP swarm address")

    @property
    def gateway_port(self) -> int:
        return int(self.node.gateway_url.rsplit(":", 1)[1])

    @property
    def guest_gateway(self) -> str:
        """The seed's trustless gateway as the guest sees it (``ipfs.gateway=``)."""
        return f"http://{SEED_GUEST_IP}:{SEED_GATEWAY_GUEST_PORT}"

    def forwards(self) -> dict[int, int]:
        """Guest port -> host port for the guestfwds of this seed (swarm; gateway when it has one)."""
        fwd = {SEED_GUEST_PORT: self.swarm_port}
        if self.gateway:
            fwd[SEED_GATEWAY_GUEST_PORT] = self.gateway_port
        return fwd

    @property
    def guest_multiaddr(self) -> str:
        """The seed's address as the guest sees it through the guestfwd."""
        return f"/ip4/{SEED_GUEST_IP}/tcp/{SEED_GUEST_PORT}/p2p/{self.node.peer_id}"

    def wrap(self, cid: str, sub: str) -> str:
        """The CID of a directory holding the directory ``cid`` at ``sub`` ("a" or "a/b"): made in MFS
        from blocks the node has (nothing is added twice) and pinned, so ``tce=ipfs:<new>/<sub>``
        reaches the same repo."""
        mfs = f"/e2e-wrap-{cid}-{sub.replace('/', '-')}"
        parent = f"{mfs}/{sub}".rsplit("/", 1)[0]
        self.node.kubo_cmd("files", "mkdir", "-p", "--cid-version=1", parent)
        self.node.kubo_cmd("files", "cp", f"/ipfs/{cid}", f"{mfs}/{sub}")
        wrapped = self.node.kubo_cmd("files", "stat", "--hash", mfs).strip()
        self.node.kubo_cmd("pin", "add", "--progress=false", wrapped, timeout=120)
        return wrapped

    def bytes_sent(self) -> int:
        return int(rpc.bitswap_stat(self.client()).get("DataSent", 0))

    def net(self) -> qemu.UserNet:
        return qemu.user_restricted(self.forwards())


def check_initrd(work: Path, script: str, name: str = "check.gz") -> Path:
    """An extra initrd putting ``script`` at ``/opt/bootsync.sh`` (TC runs it after extensions load)."""
    return guest.write_overlay(work / name, {"opt/bootsync.sh": (script.encode(), 0o755)})


def failure_check_script() -> str:
    """bootsync.sh for negative cases: the base system came up; report what the hook said."""
    return f"""#!/bin/sh
# Test check (not part of the product): reached only if the base system booted.
status=$(tr '\\n' ' ' < /tmp/tce-ipfs/status 2>/dev/null)
echo "{SENTINEL}: BASE-UP $status"
poweroff -f
"""


@dataclass
class BootOutcome:
    result: qemu.BootResult
    fields: dict[str, str] = field(default_factory=dict)  # key=value pairs from the sentinel line
    seed_bytes_sent: int = 0
    cid: str = ""

    @property
    def ok(self) -> bool:
        return self.result.ok and (self.result.sentinel_line or "").split(": ", 1)[-1].startswith("OK")

    def console_lines(self, prefix: str = "tce-ipfs:") -> list[str]:
        return [ln.strip() for ln in self.result.log_text.splitlines() if ln.strip().startswith(prefix)]


def parse_fields(line: str | None) -> dict[str, str]:
    fields: dict[str, str] = {}
    for word in shlex.split((line or "").replace("'", " "), posix=True):
        if "=" in word:
            key, _, value = word.partition("=")
            fields[key] = value
    return fields


def boot_codes(cid: str, seed: Seed | None, *, scheme: str = "ipfs", timeout: int = 90,
               extra: Sequence[str] = ()) -> str:
    codes = [f"tce={scheme}:{cid}", f"ipfs.timeout={timeout}"]
    if seed is not None:
        codes.append(f"ipfs.peers={seed.guest_multiaddr}")
    return " ".join([*codes, *extra])


def boot(kit: GuestKit, codes: str, check: Path, *, net: qemu.NetSpec | None, timeout: float = 300,
         memory: int | None = None, log_path: Path | None = None,
         stream: Callable[[str], None] | None = None, seed: Seed | None = None) -> BootOutcome:
    """Boot the kit's guest with the hook + ``check`` initrds and the given boot codes."""
    sent0 = seed.bytes_sent() if seed else 0
    result = qemu.boot(
        kit.arch, kit.base.qemu_kernel, [kit.base.initrd, kit.hook_initrd, check], f"quiet {codes}",
        timeout=timeout, net=net, memory=memory, log_path=log_path, stream=stream,
    )
    outcome = BootOutcome(result=result, fields=parse_fields(result.sentinel_line))
    if seed:
        outcome.seed_bytes_sent = seed.bytes_sent() - sent0
    return outcome


# ------------------------------------------------------------------------------- after-boot checks
MIRROR_GUEST_PORT = 8080  # where the test HTTP mirror appears inside the guest (10.0.2.100)


@contextmanager
def http_mirror(root: Path) -> Iterator[int]:
    """A plain HTTP server on loopback serving ``root`` (TC's mirror layout below it); yields its port.
    Guests reach it through a ``guestfwd`` of :data:`MIRROR_GUEST_PORT`."""
    with httpserve.serving(root) as base:
        yield int(base.rsplit(":", 1)[1])


def small_tcz(work: Path, name: str, says: str, out: Path, deps: Sequence[str] = ()) -> Path:
    """``out/NAME.tcz`` (+ .md5.txt, .dep): a program ``/usr/local/bin/NAME`` that prints ``says``."""
    tree = work / f"{name}.src"
    prog = tree / "usr/local/bin" / name
    prog.parent.mkdir(parents=True, exist_ok=True)
    prog.write_text(f"#!/bin/sh\necho {shlex.quote(says)}\n")
    prog.chmod(0o755)
    out.mkdir(parents=True, exist_ok=True)
    return tcz.pack(tree, out / f"{name}.tcz", deps=deps, info={"Description": says}).tcz


@dataclass
class AfterBoot:
    """What a booted guest must be able to do as a normal Tiny Core (tce-ipfs issue 8)."""

    lst: str = "onboot.lst"  # the list tce-load -wi appends to (lst=)
    local_tcz: str = ""  # a .tcz in the guest (check initrd) for `tce-load -i PATH`
    local_says: str = ""
    mirror_ext: str = ""  # on the HTTP mirror, for `tce-load -wi NAME`
    mirror_says: str = ""
    agent_ext: str = ""  # in the booted repo, for `tce-ipfs install NAME`
    agent_says: str = ""
    loader: str = "tce-load"  # the TC loader the guest's test base emulates (qemu.Profile.loader)

    def script(self) -> str:
        """sh lines for a check script (``fail`` defined): tcedir, ipfs mounted and set up once, then
        as the TC user tce-load -i, tce-load -wi from the mirror, tce-ipfs install."""
        q = shlex.quote
        lines = [
            "# --- after boot: a normal Tiny Core ---",
            'tcedir=$(readlink -f /etc/sysconfig/tcedir) || fail "tcedir $(readlink /etc/sysconfig/tcedir) '
            'does not resolve"',
            '[ -d "$tcedir/optional" ] || fail "tcedir $tcedir has no optional/"',
            "n=$(grep -c ' /tmp/tcloop/ipfs ' /proc/mounts)",
            '[ "$n" = 1 ] || fail "ipfs mounted $n times"',
            "runs=$(cat /tmp/tc-base.log /var/log/tce-ipfs.log 2>/dev/null"
            " | grep -c 'ran /usr/local/tce.installed/ipfs')",
            '[ "$runs" = 1 ] || fail "the install script of ipfs ran $runs times"',
            # At boot the script defers that work until tce-setup is done (at the lowest priority,
            # off the boot's critical path), so give it time.
            "i=0; while [ ! -f /home/tc/.ipfs/config ] && [ $i -lt 180 ]; do sleep 1; i=$((i + 1)); done",
            '[ -f /home/tc/.ipfs/config ] || fail "the install script of ipfs made no /home/tc/.ipfs"',
            f"grep -q 'loader {self.loader}$' /var/log/tce-ipfs.log || fail 'the hook did not expect "
            f"{self.loader}'",
        ]
        if self.loader == "tce-bootload":
            lines += [
                '[ -s /tmp/bootlog.txt ] || fail "tce-bootload did not run"',
                "! grep -q EEXIST /tmp/debugboot.log 2>/dev/null || fail \"tce-bootload: $(grep EEXIST "
                '/tmp/debugboot.log)"',
                "! grep -q ' ipfs.tcz' /tmp/debugboot.log || fail 'ipfs.tcz was handed to tce-bootload'",
            ]

        def as_tc(cmd: str, name: str, says: str) -> list[str]:
            return [f"out=$(su tc -c {q(cmd)} 2>&1) || fail {q(cmd + ': ')}\"$out\"",
                    f'[ "$({name})" = {q(says)} ] || fail {q(name + " does not run after " + cmd)}']

        if self.local_tcz:
            lines += as_tc(f"tce-load -i {self.local_tcz}", Path(self.local_tcz).stem, self.local_says)
        if self.mirror_ext:
            name = self.mirror_ext
            lines += [f"echo http://{SEED_GUEST_IP}:{MIRROR_GUEST_PORT}/ > /opt/tcemirror",
                      *as_tc(f"tce-load -wi {name}", name, self.mirror_says),
                      f'[ -f "$tcedir/optional/{name}.tcz" ] || fail "no {name}.tcz in $tcedir/optional"',
                      f'grep -qx {name}.tcz "$tcedir/{self.lst}" || fail "{name} is not in {self.lst}"']
        if self.agent_ext:
            name = self.agent_ext
            lines += [*as_tc(f"tce-ipfs install {name}", name, self.agent_says),
                      f'[ -f "$tcedir/optional/{name}.tcz" ] || fail "no {name}.tcz in $tcedir/optional"']
        lines.append('echo "after-boot checks passed"')
        return "\n".join(lines) + "\n"
