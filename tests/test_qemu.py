"""Boot the TC-layout test base under QEMU (TCG) for each arch and check TC's layout and loading path.

Each boot gets an extra initrd with:
* ``/tmp/builtin/optional/{hello,libhello-<kver>,blocked,extra}.tcz`` (``tcz.pack``) and
  ``/tmp/builtin/onboot.lst`` naming ``hello.tcz`` and ``blocked.tcz``; hello's ``.dep`` says
  ``libhello-KERNEL.tcz`` (the -KERNEL substitution); ``hello`` has an install script (tce-load: queued
  in /tmp/setup.lst at boot, run last as root; piCore's tce-bootload: run at once with sudo);
  ``/tmp/tcloop/blocked`` exists already (tce-load mounts there anyway, tce-bootload's mkdir fails);
* ``/tmp/builtin/probe.gz``: a gzip'd cpio whose ``usr/local/tce.installed/probe`` tce-setup runs;
* ``/opt/bootsync.sh``: checks everything, prints ``TCE-IPFS-SENTINEL: ok`` (or ``FAIL: <what>``),
  then ``poweroff -f``.
Time from QEMU start to the sentinel is printed per arch (run pytest with -s to see it).
Also the real guest bases themselves (their initrd's contents, boot timeouts and early stops).
Command lines without a guest: test_qemu_args.py.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.media import cpio_listing
from tce_ipfs.arch import Arch
from tce_ipfs.build import tcz
from tce_ipfs.errors import QemuError
from tce_ipfs.testbed import guest, qemu

ARCHES = [Arch.X86_64, Arch.AARCH64, Arch.X86, Arch.ARMV7]
pytestmark = pytest.mark.qemu

TIMEOUT = {Arch.X86_64: 120.0, Arch.AARCH64: 120.0, Arch.X86: 150.0, Arch.ARMV7: 180.0}

CHECKS = r"""#!/bin/sh
# test: the TC layout after tce-setup, as TC leaves it
fails=""
fail() { fails="$fails $1"; echo "check failed: $1"; }
. /etc/init.d/tc-functions
KVER="$(uname -r)"

if getbootparam tce >/dev/null; then
	# unknown tce= value: TC's tce-setup maps it to /tce, which does not exist: a dangling link
	[ "$(readlink /etc/sysconfig/tcedir)" = /tce ] || fail tcedir-unknown-value
	[ -e /etc/sysconfig/tcedir ] && fail tcedir-not-dangling
	su tc -c "tce-load -i extra" >/dev/null 2>&1 && fail tce-load-should-fail
else
	[ "$(readlink /etc/sysconfig/tcedir)" = /tmp/tce ] || fail tcedir
	[ -d /etc/sysconfig/tcedir/optional ] || fail tce-optional
fi
[ "$(cat /etc/sysconfig/tcuser)" = tc ] || fail tcuser
grep -q '^tc:x:1001:50:' /etc/passwd || fail passwd
grep -q '^staff:x:50:' /etc/group || fail group
[ -d /home/tc ] || fail home
# setupHome: .X.d and .local/bin, /etc/skel copied in, all the user's
[ -d /home/tc/.local/bin ] && [ -d /home/tc/.X.d ] || fail home-dirs
[ "$(stat -c %U /home/tc/.profile 2>/dev/null)" = tc ] || fail home-skel
# sudo: tc through /etc/sudoers (0440), a real step up from uid 1001, in the same directory
[ "$(printf 'tc\tALL=NOPASSWD: ALL')" = "$(grep '^tc' /etc/sudoers)" ] || fail sudoers-entry
[ "$(stat -c %a /etc/sudoers)" = 440 ] || fail sudoers-mode
[ "$(su tc -c 'id -u')" = 1001 ] || fail tc-not-root
stepped=$(cd /tmp/tcloop && su tc -c 'sudo /bin/sh -c "id -u; pwd"' | tr '\n' ' ')
[ "$stepped" = "0 /tmp/tcloop " ] || fail sudo-step
su lp -c 'sudo /bin/true' 2>&1 | grep -q 'not in the sudoers file' || fail sudo-refuses-others
tce-load -i extra 2>&1 | grep -q "Don't run this as root" || fail tce-load-runs-as-root
[ -d /tmp/tcloop ] || fail tcloop
# tc-config makes it root:staff 775; tce-setup's step (c) chowns it to tc:staff
[ "$(stat -c '%G %a' /usr/local/tce.installed)" = "staff 775" ] || fail tce.installed-perms
[ "$(stat -c '%a' /tmp)" = 1777 ] || fail tmp-mode
for m in virtio_net loop squashfs; do
	grep -q "^$m " /proc/modules || [ -d "/sys/module/$m" ] || fail "module-$m"
done
ifconfig lo | grep -q 'inet addr:127.0.0.1' || fail lo
# TC's compressed swap in RAM: zram0, a quarter of the free RAM at that point, swapped on, in fstab;
# none with nozswap
if checkbootparam nozswap; then
	grep -q zram /proc/swaps && fail zswap-despite-nozswap
	grep -q zram /etc/fstab && fail zswap-fstab-despite-nozswap
else
	grep -q '^/dev/zram0 .*partition' /proc/swaps || fail zswap-on
	zsize=$(cat /sys/block/zram0/disksize 2>/dev/null)
	total=$(awk '$1 == "MemTotal:" { print $2 * 1024 }' /proc/meminfo)
	[ "${zsize:-0}" -gt $((total / 8)) ] && [ "$zsize" -lt $((total / 4)) ] || fail "zswap-size-$zsize"
	grep -q '^/dev/zram0 *swap *swap *defaults,noauto' /etc/fstab || fail zswap-fstab
	swapoff -a && ! grep -q zram /proc/swaps || fail zswap-swapoff-a
fi
grep -q '^VERSION_ID=16.0' /etc/os-release || fail os-release

# (a) /tmp/builtin/probe.gz unpacked, its tce.installed script run as root
[ "$(cat /run/probe.ran 2>/dev/null)" = 0 ] || fail builtin-gz
# (b) /tmp/builtin/onboot.lst: hello and its -KERNEL dependency, loop-mounted and linked into /
grep -q " /tmp/tcloop/hello squashfs" /proc/mounts || fail hello-mounted
grep -q " /tmp/tcloop/libhello-$KVER squashfs" /proc/mounts || fail libhello-mounted
[ "$(readlink /usr/local/bin/hello)" = /tmp/tcloop/hello/usr/local/bin/hello ] || fail hello-symlink
[ "$(su tc -c hello)" = "hello from a tcz" ] || fail hello-runs
[ -e /usr/local/share/libhello/VERSION ] || fail libhello-files
[ -f /usr/local/tce.installed/libhello-$KVER ] || fail libhello-marker
# hello's install script: queued at boot, run by tce-setup as root, after libhello was linked
[ "$(cat /run/hello.installed 2>/dev/null)" = "0 libhello" ] || fail hello-install-script
[ -e /tmp/setup.lst ] && fail setup.lst-left
if [ -x /usr/bin/tce-bootload ]; then
	# piCore's loader: a plain mkdir per extension, so an existing /tmp/tcloop/<name> stops its mount
	grep -q " /tmp/tcloop/blocked squashfs" /proc/mounts && fail bootload-mounted-over-existing-dir
	grep -q "EEXIST" /tmp/debugboot.log || fail bootload-eexist-not-logged
	grep -q "Executing: /usr/local/tce.installed/hello" /tmp/debugboot.log || fail bootload-script-at-once
	[ -s /tmp/bootlog.txt ] || fail bootload-timings
else
	grep -q " /tmp/tcloop/blocked squashfs" /proc/mounts || fail blocked-not-mounted
fi

# after boot, tce-load as tc (through the sudo shim) loads a path; its install script runs at once
if ! getbootparam tce >/dev/null; then
	su tc -c "tce-load -i /tmp/builtin/optional/extra.tcz" >/tmp/extra.out 2>&1 || fail extra-load
	[ "$(cat /run/extra.installed 2>/dev/null)" = 0 ] || fail extra-install-script
	[ -L /usr/local/bin/extra ] || fail extra-symlink
	su tc -c "tce-load -i /tmp/builtin/optional/extra.tcz" | grep -q "already installed" || fail extra-again
fi

if [ -z "$fails" ]; then
	echo "TCE-IPFS-SENTINEL: ok"
else
	echo "TCE-IPFS-SENTINEL: FAIL:$fails"
fi
poweroff -f
"""


def _exe(text: str) -> tuple[bytes, int]:
    return text.encode(), 0o755


@pytest.fixture(scope="session")
def bases() -> dict[Arch, guest.GuestBase]:
    return {}


def _base(bases: dict[Arch, guest.GuestBase], arch: Arch) -> guest.GuestBase:
    if arch not in bases:
        bases[arch] = guest.ensure_base(arch)
    return bases[arch]


def _tcz_tree(root: Path, files: dict[str, tuple[str, int]]) -> Path:
    for rel, (text, mode) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    return root


def build_test_initrd(base: guest.GuestBase, out: Path, work: Path, bootsync: str) -> Path:
    opt = work / "optional"
    opt.mkdir(parents=True)
    lib = f"libhello-{base.kver}"
    tcz.pack(_tcz_tree(work / "libhello", {
        "usr/local/share/libhello/VERSION": ("1\n", 0o644),
    }), opt / f"{lib}.tcz")
    tcz.pack(_tcz_tree(work / "hello", {
        "usr/local/bin/hello": ("#!/bin/sh\necho 'hello from a tcz'\n", 0o755),
        # runs as root at the end of tce-setup: records uid and that the dependency was linked first
        "usr/local/tce.installed/hello": (
            "#!/bin/sh\n[ -e /usr/local/share/libhello/VERSION ] && d=libhello\n"
            "echo \"$(id -u) $d\" > /run/hello.installed\n", 0o755),
    }), opt / "hello.tcz", deps=["libhello-KERNEL.tcz"])
    tcz.pack(_tcz_tree(work / "blocked", {  # /tmp/tcloop/blocked exists before the loader runs
        "usr/local/share/blocked/x": ("x\n", 0o644),
    }), opt / "blocked.tcz")
    tcz.pack(_tcz_tree(work / "extra", {
        "usr/local/bin/extra": ("#!/bin/sh\necho extra\n", 0o755),
        "usr/local/tce.installed/extra": ("#!/bin/sh\nid -u > /run/extra.installed\n", 0o755),
    }), opt / "extra.tcz")
    probe = guest.write_overlay(work / "probe.gz", {
        "usr/local/tce.installed/probe": _exe("#!/bin/sh\nid -u > /run/probe.ran\n"),
    })
    files: dict[str, bytes | tuple[bytes, int]] = {
        "opt/bootsync.sh": _exe(bootsync),
        # piCore's tce-bootload takes only names ending in .tcz; tce-load adds it when missing
        "tmp/builtin/onboot.lst": b"# the list tce-setup loads from /tmp/builtin\nhello.tcz\nblocked.tcz\n",
        "tmp/tcloop/blocked/.here": b"",
        "tmp/builtin/probe.gz": probe.read_bytes(),
    }
    for path in sorted(opt.iterdir()):
        files[f"tmp/builtin/optional/{path.name}"] = path.read_bytes()
    return guest.write_overlay(out, files)


def _boot(arch: Arch, base: guest.GuestBase, extra: Path, append: str, log_path: Path,
          net: qemu.NetSpec | None = None) -> qemu.BootResult:
    result = qemu.boot(arch, base.qemu_kernel, [base.initrd, extra], append, timeout=TIMEOUT[arch],
                       net=net, log_path=log_path)
    result.require()
    print(f"\n{arch}: sentinel after {result.seconds:.1f} s (QEMU total {result.total_seconds:.1f} s); "
          f"initrd {base.initrd.stat().st_size} B; kernel {base.kver}")
    return result


@pytest.mark.parametrize("arch", ARCHES, ids=str)
def test_tc_layout_boot(arch: Arch, bases: dict[Arch, guest.GuestBase], tmp_path: Path) -> None:
    base = _base(bases, arch)
    extra = build_test_initrd(base, tmp_path / "test.gz", tmp_path / "work", CHECKS)
    result = _boot(arch, base, extra, "quiet nodhcp debugbootload", tmp_path / "console.log")
    assert result.sentinel_line == "TCE-IPFS-SENTINEL: ok", result.tail()
    assert result.exit_code == 0
    # tce-setup's output is hidden without showapps, as on TC
    assert "Loading extensions..." in result.log_text
    assert "hello.tcz: OK" not in result.log_text
    assert "booting without compressed swap" not in result.log_text  # every guest kernel has zram


def test_unknown_tce_value_dangles_like_tc(bases: dict[Arch, guest.GuestBase], tmp_path: Path) -> None:
    """tce=ipfs:<x>: /tmp/builtin still loads; /etc/sysconfig/tcedir dangles at /tce; tce-load exits 1."""
    arch = Arch.AARCH64
    base = _base(bases, arch)
    extra = build_test_initrd(base, tmp_path / "test.gz", tmp_path / "work", CHECKS)
    codes = "quiet nodhcp tce=ipfs:bafyunknown showapps debugbootload nozswap"
    result = _boot(arch, base, extra, codes, tmp_path / "console.log")
    assert result.sentinel_line == "TCE-IPFS-SENTINEL: ok", result.tail()
    assert "Skipping compressed swap in ram as requested" in result.log_text  # nozswap
    # showapps: tce-setup runs in the foreground and the loader names each extension it loads
    # (tce-load: dependencies first; piCore's tce-bootload: breadth first, per step)
    after = result.log_text.split("Loading extensions...", 1)[1].split("Done.", 1)[0]
    if qemu.profile(arch).loader == "tce-bootload":
        assert "Mounting extensions" in after and f"hello blocked libhello-{base.kver}" in after, after
        assert "EEXIST: /tmp/tcloop/blocked" in after  # its mkdir failed; the others went on
    else:
        assert f"libhello-{base.kver} hello blocked" in after, after


NET_CHECKS = r"""#!/bin/sh
# test: TC's dhcp.sh gets a lease; only the guestfwd service is reachable
fails=""
fail() { fails="$fails $1"; echo "check failed: $1"; }
n=0
until ifconfig eth0 | grep -q 'inet addr:10.0.2.15'; do
	n=$((n + 1)); [ $n -gt 60 ] && break; sleep 0.5
done
ifconfig eth0 | grep -q 'inet addr:10.0.2.15' || fail lease
[ "$(timeout 20 wget -q -O - http://10.0.2.100:8080/x 2>/dev/null)" = "hello over guestfwd" ] || fail guestfwd
timeout 5 wget -q -O /dev/null http://10.0.2.2:@HOSTPORT@/x 2>/dev/null && fail host-reachable
timeout 5 wget -q -O /dev/null http://10.0.2.100:8081/x 2>/dev/null && fail other-port-reachable
# tce-load -wi from a mirror behind the forward: .dep closure (-KERNEL), md5 check, onboot.lst
echo http://10.0.2.100:8080/ > /opt/tcemirror
su tc -c "tce-load -wi hello" > /tmp/wi.out 2>&1 || fail wi-exit
[ "$(su tc -c hello)" = "hello from a tcz" ] || fail wi-hello
[ -f "/tmp/tce/optional/libhello-$(uname -r).tcz" ] || fail wi-dep-downloaded
[ "$(cat /tmp/tce/onboot.lst)" = hello.tcz ] || fail wi-onboot
[ "$(cat /run/hello.installed 2>/dev/null)" = "0 libhello" ] || fail wi-install-script
[ -n "$fails" ] && cat /tmp/wi.out
if [ -z "$fails" ]; then echo "TCE-IPFS-SENTINEL: ok"; else echo "TCE-IPFS-SENTINEL: FAIL:$fails"; fi
poweroff -f
"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "x").write_text("hello over guestfwd")
    return root


@pytest.fixture
def http_server(http_root: Path) -> Iterator[int]:
    handler = functools.partial(_Handler, directory=str(http_root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("arch", [Arch.X86_64, Arch.AARCH64], ids=str)
def test_restricted_net(arch: Arch, bases: dict[Arch, guest.GuestBase], http_server: int,
                        http_root: Path, tmp_path: Path) -> None:
    """DHCP (TC's dhcp.sh), the guestfwd service, nothing else; tce-load -wi from a mirror there."""
    base = _base(bases, arch)
    build_test_initrd(base, tmp_path / "unused.gz", tmp_path / "work", "")
    mirror = http_root / "16.x" / arch.info.tc_repo / "tcz"
    shutil.copytree(tmp_path / "work" / "optional", mirror)
    with socket.socket() as s:  # a port nothing listens on, for the negative case
        s.bind(("127.0.0.1", 0))
        unused = s.getsockname()[1]
    script = NET_CHECKS.replace("@HOSTPORT@", str(http_server))
    extra = guest.write_overlay(tmp_path / "net.gz", {"opt/bootsync.sh": _exe(script)})
    net = qemu.user_restricted({8080: http_server, 8081: unused})
    result = _boot(arch, base, extra, "quiet", tmp_path / "console.log", net=net)
    assert result.sentinel_line == "TCE-IPFS-SENTINEL: ok", result.tail()


# ----------------------------------------------------------------------- the bases themselves

@pytest.mark.parametrize("arch", [Arch.X86_64, Arch.AARCH64], ids=str)
def test_base_initrd_contents(arch: Arch) -> None:
    base = guest.ensure_base(arch)
    assert base.kver.endswith(arch.info.kernel_flavour)
    assert base.kernel.is_file() and base.qemu_kernel.is_file()
    again = guest.ensure_base(arch)  # cached: same files
    assert again.initrd == base.initrd
    listing = {}
    for line in cpio_listing(base.initrd):
        parts = line.split()
        name = parts[parts.index("->") - 1] if "->" in parts else parts[-1]
        listing[name] = line
    for name in ("init", "etc/inittab", "etc/init.d/tc-config", "usr/bin/tce-setup", "usr/bin/tce-load",
                 "usr/share/udhcpc/default.script", "opt/bootsync.sh", "bin/busybox", "sbin/udhcpc"):
        assert name in listing, name
    assert listing["dev/console"].startswith("c")
    assert listing["tmp"].startswith("drwxrwxrwt")
    assert listing["bin/busybox.suid"].startswith("-rwsr-xr-x")
    assert listing["etc/shadow"].startswith("-rw-------")
    assert listing["etc/sudoers"].startswith("-r--r-----")
    assert "etc/skel/.profile" in listing
    # the piCore flavour (aarch64) brings piCore's loader; tce-setup hands its lists to it
    assert ("usr/bin/tce-bootload" in listing) == (qemu.profile(arch).loader == "tce-bootload")
    assert "-> /bin/busybox.suid" in listing["bin/su"]
    assert "-> /proc/mounts" in listing["etc/mtab"]
    moddir = f"lib/modules/{base.kver}"
    assert f"{moddir}/modules.dep" in listing
    assert all(f"{moddir}/{m}" in listing for m in base.modules)
    names = [Path(m).stem for m in base.modules]
    assert names.index("net_failover") < names.index("virtio_net")  # dependencies first
    if arch is Arch.X86_64:
        assert names.index("virtio_ring") < names.index("virtio")
    assert f"{moddir}/kernel/fs/overlayfs/overlay.ko" in listing  # shipped, not autoloaded
    assert "overlay" not in names


def test_boot_timeout_and_stop_on_sentinel(tmp_path: Path) -> None:
    arch = Arch.AARCH64
    base = guest.ensure_base(arch)
    lines: list[str] = []
    # The stock bootsync.sh does not power off: the guest sits at its shell.
    stopped = qemu.boot(arch, base.qemu_kernel, [base.initrd], "quiet nodhcp", timeout=120,
                        sentinel="Loading extensions", stop_on_sentinel=True, stream=lines.append,
                        log_path=tmp_path / "a.log")
    assert stopped.ok and not stopped.timed_out and stopped.exit_code == -1
    assert any("Loading extensions" in line for line in lines)
    assert (tmp_path / "a.log").read_text().count("Booting") == 1
    hung = qemu.boot(arch, base.qemu_kernel, [base.initrd], "quiet nodhcp", timeout=8,
                     sentinel="never printed", log_path=tmp_path / "b.log")
    assert not hung.ok and hung.timed_out and hung.exit_code == -1
    with pytest.raises(QemuError, match="timed out"):
        hung.require()
