"""Boot loader config editing: syslinux, config.txt, cmdline.txt, iPXE (pure text)."""

from __future__ import annotations

import pytest

from tce_ipfs.errors import RemasterError, UsageError
from tce_ipfs.media import bootcfg

CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
CID2 = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
PEER_ID = "12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf"

# Tiny Core's CorePure64 isolinux.cfg, as shipped (display + prompt, no menu).
TC_CFG = """\
display boot.msg
default corepure64
label corepure64
\tkernel /boot/vmlinuz64
\tinitrd /boot/corepure64.gz
\tappend loglevel=3

label mc
\tkernel /boot/vmlinuz64
\tappend initrd=/boot/corepure64.gz loglevel=3
implicit 0
prompt 1
timeout 300
F1 boot.msg
F2 f2
F3 f3
F4 f4
"""

MENU_CFG = """\
UI menu.c32
PROMPT 0
TIMEOUT 50
ONTIMEOUT tc
APPEND loglevel=3
LABEL tc
  MENU LABEL Boot TinyCore
  MENU DEFAULT
  KERNEL /boot/vmlinuz
  APPEND initrd=/boot/core.gz,/boot/extra.gz quiet
  TEXT HELP
  label inside help text is not a label
  ENDTEXT
LABEL tc-base
  MENU LABEL Boot TinyCore (base)
  KERNEL /boot/vmlinuz
  INITRD /boot/core.gz
"""

P2P = "/boot/tce-ipfs.gz"


def _add(text: str, cid: str = CID, **kw: object) -> str:
    return bootcfg.add_p2p_entry(text, cid=cid, codes=kw.pop("codes", {}),  # type: ignore[arg-type]
                                 extra_initrds=[P2P], **kw)  # type: ignore[arg-type]


def test_entry_based_on_default_keeps_originals() -> None:
    out = _add(TC_CFG, codes={"ipfs.peers": "/ip4/10.0.2.100/tcp/4001/p2p/12D3KooX", "base": None})
    assert out.startswith(TC_CFG.rstrip("\n"))  # every original line untouched, in place
    entry = bootcfg.p2p_entry(out)
    assert entry is not None
    assert entry.kernel == "/boot/vmlinuz64"
    assert entry.initrds == ["/boot/corepure64.gz", P2P]
    assert entry.append == f"loglevel=3 tce=ipfs:{CID} ipfs.peers=/ip4/10.0.2.100/tcp/4001/p2p/12D3KooX base"
    cfg = bootcfg.parse_syslinux(out, ours=True)
    assert [e.label for e in cfg.entries] == ["corepure64", "mc", "tce-ipfs"]
    assert cfg.default == "corepure64"
    assert "MENU" not in out  # no menu UI in this file: no MENU lines added


def test_idempotent_and_replaces_previous_entry() -> None:
    once = _add(TC_CFG, make_default=True)
    again = _add(once, make_default=True)
    assert again == once
    other = _add(once, cid=CID2)  # a new CID, no --default: the user's default comes back
    assert other.count("LABEL tce-ipfs") == 1
    assert CID not in other and f"tce=ipfs:{CID2}" in other
    assert bootcfg.parse_syslinux(other).default == "corepure64"
    assert bootcfg.strip_ours(other) == TC_CFG
    assert bootcfg.strip_ours(once) == TC_CFG


def test_default_switching() -> None:
    out = _add(TC_CFG, make_default=True)
    cfg = bootcfg.parse_syslinux(out)  # parse_syslinux reads the user's view (ours stripped) ...
    assert cfg.default == "corepure64"
    assert "# tce-ipfs was: default corepure64" in out
    live = [ln.strip() for ln in out.splitlines() if ln.strip().lower().startswith("default")]
    assert live == ["DEFAULT tce-ipfs"]  # ... while syslinux sees only ours
    assert bootcfg.parse_syslinux(out, ours=True).default_entry().label == "tce-ipfs"


def test_menu_config() -> None:
    out = _add(MENU_CFG, make_default=True)
    entry = bootcfg.p2p_entry(out)
    assert entry is not None
    assert entry.initrds == ["/boot/core.gz", "/boot/extra.gz", P2P]  # from APPEND initrd=
    assert entry.append == f"loglevel=3 tce=ipfs:{CID}" or entry.append == f"quiet tce=ipfs:{CID}"
    assert entry.append == f"quiet tce=ipfs:{CID}"  # label APPEND overrides the global one
    assert "# tce-ipfs was: ONTIMEOUT tc" in out
    assert "# tce-ipfs was: MENU DEFAULT" in out
    assert "\tMENU DEFAULT" in out and "MENU LABEL Boot with extensions from IPFS" in out
    assert bootcfg.strip_ours(out) == MENU_CFG
    # without --default the menu default stays
    plain = _add(MENU_CFG)
    assert "was:" not in plain and "\tMENU DEFAULT" not in plain


def test_label_without_append_uses_global_append() -> None:
    out = _add(MENU_CFG, base_label="tc-base")
    entry = bootcfg.p2p_entry(out)
    assert entry is not None and entry.append == f"loglevel=3 tce=ipfs:{CID}"
    assert entry.initrds == ["/boot/core.gz", P2P]


def test_existing_tce_code_is_replaced() -> None:
    cfg = "default a\nlabel a\n kernel k\n initrd c.gz\n append tce=sda1 ipfs.timeout=5 lst=x.lst quiet\n"
    entry = bootcfg.p2p_entry(_add(cfg, codes={"lst": "y.lst"}))
    assert entry is not None
    assert entry.append == f"quiet tce=ipfs:{CID} lst=y.lst"


def test_refusals() -> None:
    with pytest.raises(RemasterError, match="no LABEL"):
        _add("default vmlinuz initrd=core.gz\n")
    with pytest.raises(RemasterError, match="did not write"):
        _add("default tce-ipfs\nlabel tce-ipfs\n kernel k\n initrd i\n")
    with pytest.raises(RemasterError, match="no initrd"):
        _add("label a\n kernel k\n")
    with pytest.raises(RemasterError, match="no '# tce-ipfs end'"):
        bootcfg.strip_ours(bootcfg.BEGIN + "\nLABEL x\n")


def test_parse_codes() -> None:
    peers = f"/ip4/1.2.3.4/tcp/4001/p2p/{PEER_ID},/ip4/5.6.7.8/tcp/4001/p2p/{PEER_ID}"
    assert bootcfg.parse_codes([f"ipfs.peers={peers}", "base", "ipfs.timeout=60"]) == {
        "ipfs.peers": peers, "base": None, "ipfs.timeout": "60"}
    # tce-ipfs's own codes are checked against bootcodes.CODES (test_bootcodes.py has the rest)
    for bad in ("a b=c", "x=has space", "x=quo'te", "tce=ipfs:x", "initrd=x.gz", "=v", "", "ipfs.tiemout=60",
                "ipfs.peers=/ip4/1.2.3.4/tcp/4001/p2p/X"):
        with pytest.raises(UsageError):
            bootcfg.parse_codes([bad])


def test_cmdline_edit() -> None:
    line = "console=tty1 root=/dev/ram0 rootwait quiet nortc loglevel=3 noembed tce=mmcblk0p2 ipfs.old=1"
    out = bootcfg.edit_cmdline(line, CID, {"ipfs.peers": "/ip4/1.2.3.4/tcp/4001/p2p/X"})
    assert out == ("console=tty1 root=/dev/ram0 rootwait quiet nortc loglevel=3 noembed "
                   f"tce=ipfs:{CID} ipfs.peers=/ip4/1.2.3.4/tcp/4001/p2p/X")
    assert bootcfg.edit_cmdline(out, CID, {"ipfs.peers": "/ip4/1.2.3.4/tcp/4001/p2p/X"}) == out
    assert "\n" not in out


PI_CONFIG = """\
# piCore64 config.txt
[pi3]
kernel kernel61225v8.img
initramfs rootfs-piCore64-16.0.gz,modules-6.12.25-piCore-v8.gz followkernel

[pi4]
kernel kernel61225v8.img
initramfs rootfs-piCore64-16.0.gz,modules-6.12.25-piCore-v8.gz followkernel  # the 4

[ALL]
cmdline cmdline.txt
"""


def test_config_txt() -> None:
    out = bootcfg.edit_config_txt(PI_CONFIG, "tce-ipfs.gz")
    pi = bootcfg.parse_config_txt(out)
    assert pi.initramfs == [["rootfs-piCore64-16.0.gz", "modules-6.12.25-piCore-v8.gz", "tce-ipfs.gz"]] * 2
    assert pi.kernels == ["kernel61225v8.img"] * 2
    assert pi.cmdlines == ["cmdline.txt"]
    assert "followkernel  # the 4\n" in out
    assert bootcfg.edit_config_txt(out, "tce-ipfs.gz") == out  # idempotent
    assert len(out.splitlines()) == len(PI_CONFIG.splitlines())
    with pytest.raises(RemasterError, match="initramfs"):
        bootcfg.edit_config_txt("kernel kernel8.img\n", "tce-ipfs.gz")


def test_ipxe_and_pxelinux() -> None:
    script = bootcfg.ipxe_script("vmlinuz64", ["corepure64.gz", "tce-ipfs.gz"], f"loglevel=3 tce=ipfs:{CID}")
    lines = script.splitlines()
    assert lines[0] == "#!ipxe"
    assert f"kernel vmlinuz64 initrd=corepure64.gz initrd=tce-ipfs.gz loglevel=3 tce=ipfs:{CID}" in lines
    assert lines[-1] == "boot" and "initrd tce-ipfs.gz" in lines
    pxe = bootcfg.syslinux_netboot("vmlinuz64", ["corepure64.gz", "tce-ipfs.gz"], "x", serial=True)
    assert pxe.splitlines()[0] == "SERIAL 0 115200"
    entry = bootcfg.parse_syslinux(pxe).default_entry()
    assert entry.label == "tce-ipfs" and entry.initrds == ["corepure64.gz", "tce-ipfs.gz"]
