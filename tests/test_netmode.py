"""Network modes (``ipfs.netmode``), without QEMU and without a daemon.

* the host's rules (``resolve_mode``, ``public_config``) -- the mode a node runs in and the keys of
  an open-network node;
* the boot hook's public mode agrees with them: kubo's real ``init`` with the hook's profiles, then the
  hook's own ``net_keys`` + ``kubo_config_set`` (lib/public.sh, lib/kubo.sh, lib/configset.awk, in
  busybox sh), then kubo's real ``config show`` -- every key ``public_config()`` names has the same
  value there, set by the hook or left at kubo's default. Nothing is started: no daemon, nothing dialled.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support import REPO_ROOT
from tce_ipfs.errors import UsageError
from tce_ipfs.ipfs import isolation, netmode, opennet

HOOK_LIB = REPO_ROOT / "initrd-hooks" / "lib"
BOOT = [f"/ip4/192.0.0.{200 + i}/tcp/4001/p2p/12D3KooWBoot{i}BootBootBootBootBootBootBootBootBootBo"
        for i in range(2)]
# kubo's own defaults for the keys the hook leaves alone (absent from the config it writes); a
# public_config() value that differs from these would mean the hook and the host disagree.
KUBO_DEFAULTS: dict[str, Any] = {
    "Swarm.Transports.Network.Relay": True,
    "Swarm.RelayClient.Enabled": True,
    "Swarm.RelayService.Enabled": False,  # set false by the lowpower profile
    "Swarm.EnableHolePunching": True,
}


# ------------------------------------------------------------------------------------- host rules
@pytest.mark.parametrize(("mode", "peers", "key", "want"), [
    (None, False, False, "public"),  # a bare tce=ipfs:CID at home
    (None, True, False, "lan"),  # a lab's boot line names its peers
    (None, True, True, "private"),
    (None, False, True, "private"),
    ("public", True, False, "public"),
    ("lan", False, False, "lan"),
    ("private", False, True, "private"),
])
def test_resolve_mode(mode: str | None, peers: bool, key: bool, want: str) -> None:
    assert netmode.resolve_mode(mode, peers=peers, swarm_key=key) == want


@pytest.mark.parametrize(("mode", "key", "message"), [
    ("public", True, "cannot join the public network"),
    ("private", False, "needs a swarm key"),
    ("internet", False, "one of public, lan, private"),
])
def test_resolve_mode_refuses(mode: str, key: bool, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        netmode.resolve_mode(mode, peers=False, swarm_key=key)


def test_public_config_roles() -> None:
    client = netmode.public_config(BOOT)
    assert client["Bootstrap"] == BOOT and client["AutoConf.Enabled"] is False
    assert client["Routing.Type"] == "dhtclient" and client["Routing.DelegatedRouters"] == []
    assert client["Provide.Enabled"] is True and client["Provide.Strategy"] == "roots"
    assert client["Swarm.RelayClient.Enabled"] and client["Swarm.EnableHolePunching"]
    assert not client["Swarm.RelayService.Enabled"] and client["Swarm.DisableNatPortMap"]
    auto = netmode.public_config()
    assert auto["Bootstrap"] == ["auto"] and auto["AutoConf.Enabled"] is True
    assert auto["Routing.Type"] == "autoclient" and auto["Swarm.DisableNatPortMap"] is False
    server = netmode.public_config(BOOT, role="server", relay_service=True)
    assert server["Routing.Type"] == "dhtserver" and server["AutoNAT.ServiceMode"] == "enabled"
    assert server["Swarm.RelayService.Enabled"] and not server["Provide.Enabled"]
    assert netmode.public_config(BOOT, role="server", dht_server=False)["Routing.Type"] == "dhtclient"
    for bad in (["auto"], ["/ip4/192.0.0.200/tcp/4001"]):
        with pytest.raises(UsageError, match="must be a multiaddr ending in /p2p/"):
            netmode.public_config(bad)


# ------------------------------------------------------------------------------------- hook = host
def hook_public_config(kubo: Path, tmp_path: Path, *, bootstrap: list[str],
                       seed: str = "1") -> dict[str, Any]:
    """kubo's real config after the hook's init profiles and the hook's own ``net_keys``, set with
    ``kubo_config_set``."""
    shell = shutil.which("busybox")
    if shell is None:
        pytest.skip("busybox not installed")
    work = tmp_path / "work"
    repo = work / "repo"
    work.mkdir()
    env = {"PATH": f"{kubo.parent}:/usr/bin:/bin", "IPFS_PATH": str(repo), "HOME": str(tmp_path),
           "IPFS_TELEMETRY": "off"}
    subprocess.run([str(kubo), "init", "--empty-repo", "--profile=test,lowpower"], env=env, check=True,
                   capture_output=True, timeout=60)
    script = f"""
        ROOT={tmp_path}
        TCE_IPFS_LIB={HOOK_LIB}
        . "$TCE_IPFS_LIB/lib.sh"
        . "$TCE_IPFS_LIB/kubo.sh"
        . "$TCE_IPFS_LIB/public.sh"
        mkdir -p "$ROOT/var/log"
        WORK={work} IPFS_PATH={repo} NET=public SEED={seed} KUBO_GOMEMLIMIT=100MiB
        BOOTSTRAP="{' '.join(bootstrap)}"
        net_keys >"$WORK/net.sets"
        kubo_config_set 999999999 "$WORK/net.sets" || {{ echo "$KUBO_ERR" >&2; exit 1; }}
    """
    res = subprocess.run([shell, "sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    shown = subprocess.run([str(kubo), "config", "show"], env=env, check=True, capture_output=True,
                           timeout=60).stdout
    return dict(json.loads(shown))


@pytest.mark.kubo
@pytest.mark.parametrize("bootstrap", [BOOT, []], ids=["ipfs.bootstrap", "kubos-defaults"])
def test_hook_public_mode_agrees_with_public_config(host_kubo: Path, tmp_path: Path,
                                                    bootstrap: list[str]) -> None:
    config = hook_public_config(host_kubo, tmp_path, bootstrap=bootstrap)
    wanted = netmode.public_config(bootstrap or None, memory="100MiB")
    differ = {}
    for key, value in wanted.items():
        if key in ("Routing.Type", "DNS.Resolvers"):
            continue  # set by other parts of the hook (kubo.sh; DNS stays the system's at boot)
        try:
            got = isolation.get_dotted(config, key)
        except KeyError:
            got = KUBO_DEFAULTS.get(key, "(absent)")
        if got is None and key in KUBO_DEFAULTS:
            got = KUBO_DEFAULTS[key]
        if got != value:
            differ[key] = (got, value)
    assert not differ, differ
    sets = (tmp_path / "work" / "net.sets").read_text().splitlines()
    done = (tmp_path / "work" / "configset.done").read_text().split()
    assert sorted(done) == sorted(line.split("\t")[0] for line in sets)  # one awk pass, no `ipfs config`


@pytest.mark.kubo
def test_hook_seed_off_announces_nothing(host_kubo: Path, tmp_path: Path) -> None:
    config = hook_public_config(host_kubo, tmp_path, bootstrap=BOOT, seed="0")
    assert config["Provide"]["Enabled"] is False
    assert config["Bootstrap"] == BOOT


@pytest.mark.parametrize(("reach", "prov", "lines"), [
    ({"state": "public", "text": "public: reachable directly at /ip4/192.0.0.200/tcp/4001", "relays": []},
     {"records": 3, "total": 3, "last_at": "2026-11-30T05:36:13Z", "interval_s": 79200},
     ["network:   public: reachable directly at /ip4/192.0.0.200/tcp/4001",
      "provided:  3 provider record(s) at 2026-11-30T05:36:13Z, again every 22 h (3 since kubo started)"]),
    ({"state": "relayed", "text": "behind NAT, reachable through 1 relay(s); ...", "relays": ["/ip4/r"]},
     {"records": 0, "total": 0, "last_at": None, "interval_s": 79200},
     ["network:   behind NAT, reachable through 1 relay(s); ...", "relays:    /ip4/r",
      "provided:  new pins announced as they come; the first round of all of them starts a minute after "
      "kubo's start, again every 22 h"]),
    ({"state": "unreachable", "text": "behind NAT and no relay yet: others cannot connect", "relays": []},
     {"records": None, "total": None, "last_at": None, "interval_s": None},
     ["network:   behind NAT and no relay yet: others cannot connect"]),
])
def test_render_network(reach: dict[str, Any], prov: dict[str, Any], lines: list[str]) -> None:
    """What `status` and `seed status` print about the open network (opennet.render_network)."""
    from tce_ipfs.ipfs import opennet

    assert opennet.render_network({"reachability": reach, "provide": prov}) == lines
    assert opennet.render_network(None) == []


@pytest.mark.parametrize(("states", "addrs", "how"), [
    # AutoNAT still probing, then public: announced as soon as it says so
    (["unknown", "public"], [], "public: reachable directly"),
    # a relay, but the router's outside address is still listed (unconfirmed): wait until it is gone
    (["relayed", "relayed"], [["/ip4/198.51.100.7/tcp/4001", "/ip4/10.0.0.2/tcp/4001"],
                              ["/ip4/10.0.0.2/tcp/4001", "/ip4/100.64.1.1/tcp/4001"]], "behind NAT"),
    # never decided: announced anyway at the bound, and the caller is told (how None)
    (["unknown"] * 5, [], None),
])
def test_announce_waits_until_peers_can_be_told_how_to_reach_us(
        monkeypatch: pytest.MonkeyPatch, states: list[str], addrs: list[list[str]], how: str | None) -> None:
    seen: list[str] = []
    clock = [0.0]
    texts = {"public": "public: reachable directly", "relayed": "behind NAT, reachable through 1 relay(s)",
             "unknown": "not known yet"}

    def reach(c: object) -> dict[str, Any]:
        state = states[min(len(seen), len(states) - 1)]
        seen.append(state)
        return {"state": state, "text": texts[state]}

    def ident(c: object) -> dict[str, Any]:
        relay = "/ip4/192.0.2.9/tcp/4001/p2p/X/p2p-circuit"
        return {"Addresses": [*addrs[min(len(seen), len(addrs)) - 1], relay]}

    provided: list[str] = []
    monkeypatch.setattr(opennet, "reachability", reach)
    monkeypatch.setattr(opennet, "identity", ident)
    monkeypatch.setattr(opennet, "provide", lambda c, cid, timeout: provided.append(cid))
    monkeypatch.setattr("tce_ipfs.ipfs.opennet.time.sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    monkeypatch.setattr("tce_ipfs.ipfs.opennet.time.monotonic", lambda: clock[0])
    done = opennet.announce(object(), "bafyroot", wait=3)
    assert provided == ["bafyroot"]  # always announced, at the latest at the bound
    assert done["how"] is None if how is None else done["how"].startswith(how), done
    assert done["waited_s"] == (3 if how is None else len(states) - 1)


def test_announce_root_that_fails_is_a_warning(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """The root is published and pinned already: a failed announcement (no DHT peer yet) must not fail
    the publish; the log says kubo announces it again."""
    from tce_ipfs.errors import NodeError

    def fail(c: object, cid: str, *, timeout: float) -> dict[str, Any]:
        raise NodeError("failed to find any peer in table")

    monkeypatch.setattr(opennet, "announce", fail)
    assert opennet.announce_root(object(), "bafyroot") == {"how": None,
                                                          "error": "failed to find any peer in table"}
    assert "announces its pins again" in caplog.text
