"""A small but realistic Tiny Core repo, used by the demo, the end-to-end tests and the benchmarks.

Shape (what the boot path must get right):

* ``hello`` -> ``hello-core`` -> ``libhello``: a dependency chain of depth 3;
* ``hello`` also needs ``hello-mod-KERNEL.tcz``: a ``-KERNEL`` dependency resolved per guest kernel;
* ``greeter``: has an install script (``usr/local/tce.installed/greeter``), queued and run by TC;
* ``bigdata``: >= 10 MiB of incompressible bytes, so a fetch is not trivially small;
* ``extra`` (+ its dep ``libextra``): in the repo but not in ``onboot.lst``, for on-demand installs.

Programs are POSIX sh so one repo serves every arch; the ``-KERNEL`` extension is built for the
kernel release(s) given.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tce_ipfs.build import tcz

ONBOOT = ("hello.tcz", "greeter.tcz", "bigdata.tcz")
BIGDATA_BYTES = 10 * 1024 * 1024 + 4096


@dataclass
class SampleRepo:
    path: Path
    onboot: list[str]
    closure: list[str]  # every extension a boot must load, deps first
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def payload_bytes(self) -> int:
        return sum(self.sizes[name] for name in self.closure)


def _script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def _pseudo_random(n: int, seed: bytes) -> bytes:
    """Deterministic, incompressible bytes (so the image and its CID are stable across runs)."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:n])


def build(out: Path, kernels: Iterable[str], *, work: Path | None = None) -> SampleRepo:
    """Build the sample repo (flat TC layout: ``*.tcz`` + sidecars + ``onboot.lst``) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    work = work or out.parent / (out.name + ".src")
    kernels = sorted(set(kernels))
    trees: dict[str, tuple[list[str], dict[str, str]]] = {}

    def tree(name: str, deps: list[str], description: str) -> Path:
        root = work / name
        root.mkdir(parents=True, exist_ok=True)
        trees[name] = (deps, {"Description": description, "Version": "1.0"})
        return root

    root = tree("libhello", [], "shared data for hello")
    (root / "usr/local/share/libhello").mkdir(parents=True, exist_ok=True)
    (root / "usr/local/share/libhello/greeting").write_text("hello from ipfs\n")

    root = tree("hello-core", ["libhello.tcz"], "core of hello")
    _script(root / "usr/local/bin/hello-core", "#!/bin/sh\ncat /usr/local/share/libhello/greeting\n")

    for kver in kernels:
        root = tree(f"hello-mod-{kver}", [], f"kernel-specific part of hello for {kver}")
        (root / "usr/local/share/hello-mod").mkdir(parents=True, exist_ok=True)
        (root / f"usr/local/share/hello-mod/{kver}").write_text(kver + "\n")

    root = tree("hello", ["hello-core.tcz", "hello-mod-KERNEL.tcz"], "says hello (dep chain of 3)")
    _script(root / "usr/local/bin/hello",
            '#!/bin/sh\n[ -f "/usr/local/share/hello-mod/$(uname -r)" ] || '
            '{ echo "no kernel part"; exit 1; }\n'
            "exec hello-core\n")

    root = tree("greeter", [], "has an install script")
    _script(root / "usr/local/bin/greeter", "#!/bin/sh\ncat /usr/local/etc/greeter.conf\n")
    _script(root / "usr/local/tce.installed/greeter",
            "#!/bin/sh\n# Runs as root after the extension is loaded (TC queues it in /tmp/setup.lst).\n"
            "mkdir -p /usr/local/etc\necho 'greeter installed' > /usr/local/etc/greeter.conf\n")

    root = tree("bigdata", [], "10 MiB of incompressible data")
    (root / "usr/local/share/bigdata").mkdir(parents=True, exist_ok=True)
    (root / "usr/local/share/bigdata/blob").write_bytes(_pseudo_random(BIGDATA_BYTES, b"tce-ipfs"))

    root = tree("libextra", [], "dependency of extra")
    (root / "usr/local/share/libextra").mkdir(parents=True, exist_ok=True)
    (root / "usr/local/share/libextra/data").write_text("extra data\n")
    root = tree("extra", ["libextra.tcz"], "installed on demand, not at boot")
    _script(root / "usr/local/bin/extra", "#!/bin/sh\ncat /usr/local/share/libextra/data\n")

    sizes: dict[str, int] = {}
    for name, (deps, info) in sorted(trees.items()):
        result = tcz.pack(work / name, out / f"{name}.tcz", deps=deps, info=info)
        sizes[f"{name}.tcz"] = result.size
    (out / "onboot.lst").write_text("".join(f"{n}\n" for n in ONBOOT))
    os.sync()
    kernel_parts = [f"hello-mod-{k}.tcz" for k in kernels[:1]]
    closure = ["libhello.tcz", "hello-core.tcz", *kernel_parts, "hello.tcz", "greeter.tcz", "bigdata.tcz"]
    return SampleRepo(path=out, onboot=list(ONBOOT), closure=closure, sizes=sizes)


def check_script(repo: SampleRepo, *, sentinel: str = "TCE-IPFS-SENTINEL", closure: list[str] | None = None,
                 extra: str = "") -> str:
    """/opt/bootsync.sh for a guest: prints ``<sentinel>: OK ...`` only if the whole closure loaded
    (``closure``: when the boot loads more than the sample repo) and the ``extra`` sh lines pass.

    It also reports kubo's peak RSS (VmHWM), the guest's uptime when it started and when it finished
    (``bootsync_up``, ``sentinel_up``: the boot benchmark's clock) and the hook's status file.
    """
    names = " ".join(n[: -len(".tcz")] for n in (closure or repo.closure))
    return f"""#!/bin/sh
# Test check (not part of the product): runs as TC's /opt/bootsync.sh, after tce-setup.
read -r up0 _ < /proc/uptime
fail() {{ echo "{sentinel}: FAIL $*"; poweroff -f; }}
for name in {names}; do
    grep -q " /tmp/tcloop/$name " /proc/mounts || fail "not mounted: $name"
    [ -e "/usr/local/tce.installed/$name" ] || fail "no marker: $name"
done
[ "$(hello)" = "hello from ipfs" ] || fail "hello did not run: $(hello 2>&1)"
[ "$(greeter)" = "greeter installed" ] || fail "greeter install script did not run"
[ -s /usr/local/share/bigdata/blob ] || fail "bigdata missing"
{extra}pid=$(sed -n 's/^kubo_pid=//p' /tmp/tce-ipfs/status 2>/dev/null)  # the hook's daemon, not another ipfs
rss=$( [ -n "$pid" ] && awk '/VmHWM/ {{print $2}}' "/proc/$pid/status")
status=$(tr '\\n' ' ' < /tmp/tce-ipfs/status 2>/dev/null)
read -r up1 _ < /proc/uptime
times="bootsync_up=$up0 sentinel_up=$up1"
echo "{sentinel}: OK loaded={len(closure or repo.closure)} kubo_hwm_kb=${{rss:-none}} $times $status"
poweroff -f
"""
