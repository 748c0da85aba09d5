"""IPFS Cluster's two programs for the seeds' host: ``ipfs-cluster-service`` and ``ipfs-cluster-ctl``.

``ensure(arch)`` returns a ``ClusterBinaries`` for ``cache_dir()/ipfs-cluster/<version>/<recipe>/<arch>/``:
both programs built from the Go module proxy (``settings.CLUSTER_VERSION``), static (CGO off), trimmed
and stripped, checked by ``elf.validate`` (and, for the host arch, by running ``--version``). Next to
them ``cluster.json`` (the manifest) records version, arch, sha256 and size of each, the recipe and
the build time; a second call reads it and returns at once. The recipe (flags, programs, source
patches) is hashed into ``recipe_id()``, part of the cache path, so a changed recipe builds anew
beside the old binaries. Download, patching, the build lock and the manifest are kubo's
(``build.kubo``'s shared helpers); only what differs for cluster lives here.

Isolation (``PATCHES``): upstream's cluster host (``clusterhost.go``) hard-codes libp2p features that
reach beyond the peers we name, with no configuration key to turn them off -- UPnP / NAT-PMP port
mapping (talks to the router), the AutoNAT service (dials back addresses other peers hand it), the
relay transport, AutoRelay (looks for public relays through the DHT) and hole punching. The patches
remove them and add a connection gater that admits loopback, RFC 1918 and link-local IPv4 addresses
only, whatever the peerstore, the DHT or a peer says: the cluster counterpart of kubo's
``Swarm.AddrFilters`` (``ipfs.isolation``). One more patch makes a joining peer connect to every peer
the one it joined knows (``_JOIN_PATCHES``). Everything else is configuration (``ipfs.clusterconfig``).
A version without patches is refused, not built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tce_ipfs import proc
from tce_ipfs.arch import Arch
from tce_ipfs.build import elf, gomodule
from tce_ipfs.build.kuborecipe import Edit
from tce_ipfs.errors import BuildError, CommandFailed
from tce_ipfs.settings import CLUSTER_MODULE, CLUSTER_VERSION, cache_dir

log = logging.getLogger(__name__)

# Bump when the build procedure changes in a way the other recipe fields do not show.
RECIPE_REVISION = 1

SERVICE = "ipfs-cluster-service"
CTL = "ipfs-cluster-ctl"
PROGRAMS: tuple[str, ...] = (SERVICE, CTL)  # each is ./cmd/<name> in the module
LDFLAGS = "-s -w"
MANIFEST_NAME = "cluster.json"
BUILD_TIMEOUT = 3600.0  # a hang guard: a cold build on 2 shared cores takes minutes
RELEASES = "https://github.com/ipfs-cluster/ipfs-cluster/releases"

_GATER = '''
// privateOnly is the connection gater added by tce-ipfs: the cluster host dials and accepts loopback,
// RFC 1918 and link-local IPv4 addresses only, whatever the peerstore, the DHT or a peer hands it.
type privateOnly struct{}

var privateNets = func() []*net.IPNet {
	var nets []*net.IPNet
	for _, cidr := range []string{
		"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
	} {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			panic(err)
		}
		nets = append(nets, n)
	}
	return nets
}()

func privateAddr(a ma.Multiaddr) bool {
	ip, err := manet.ToIP(a)
	if err != nil || ip.To4() == nil {
		return false
	}
	for _, n := range privateNets {
		if n.Contains(ip.To4()) {
			return true
		}
	}
	return false
}

func (privateOnly) InterceptPeerDial(peer.ID) bool { return true }

func (privateOnly) InterceptAddrDial(_ peer.ID, a ma.Multiaddr) bool { return privateAddr(a) }

func (privateOnly) InterceptAccept(c network.ConnMultiaddrs) bool {
	return privateAddr(c.RemoteMultiaddr())
}

func (privateOnly) InterceptSecured(_ network.Direction, _ peer.ID, c network.ConnMultiaddrs) bool {
	return privateAddr(c.RemoteMultiaddr())
}

func (privateOnly) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
'''

# clusterhost.go of v1.0.x and v1.1.0 (the same text in both).
_HOST_PATCHES: tuple[Edit, ...] = (
    # The gater instead of UPnP/NAT-PMP port mapping.
    Edit("clusterhost.go", "\t\tlibp2p.NATPortMap(),\n", "\t\tlibp2p.ConnectionGater(privateOnly{}),\n"),
    # No AutoNAT service, no relay transport, no AutoRelay (public relays found through the DHT), no
    # hole punching. The getters stay referenced (Go refuses unused variables).
    Edit("clusterhost.go",
         "\t\tlibp2p.EnableNATService(),\n"
         "\t\tlibp2p.EnableRelay(),\n"
         "\t\tlibp2p.EnableAutoRelayWithPeerSource(newPeerSource(hostGetter, dhtGetter)),\n"
         "\t\tlibp2p.EnableHolePunching(),\n",
         "\t\tlibp2p.DisableRelay(), // tce-ipfs: no relays, AutoNAT service or hole punching\n"),
    Edit("clusterhost.go", "\tif cfg.EnableRelayHop {\n",
         "\t_, _ = hostGetter, dhtGetter\n\tif cfg.EnableRelayHop {\n"),
    Edit("clusterhost.go", "\t\tlibp2p.PrivateNetwork(psk),\n\t\tlibp2p.EnableNATService(),\n",
         "\t\tlibp2p.PrivateNetwork(psk),\n"),
    Edit("clusterhost.go", '\tma "github.com/multiformats/go-multiaddr"\n',
         '\tma "github.com/multiformats/go-multiaddr"\n\tmanet "github.com/multiformats/go-multiaddr/net"\n'
         '\tcontrol "github.com/libp2p/go-libp2p/core/control"\n\t"net"\n'),
    Edit("clusterhost.go", "\nfunc baseOpts(", _GATER + "\nfunc baseOpts("),
)

# cluster.go: a peer that joins connects to every peer the one it joined knows (asked again every 5 s
# for a minute: a peer that joined a moment earlier shows up there once its first ping went round).
# Without it a seed
# that joins through the first one never learns the other seeds' addresses on a LAN without mDNS
# (upstream leaves that to the LAN DHT, which ignores loopback addresses, or to mDNS, which we keep
# off), so cluster calls to them fail with "routing: not found".
_JOIN_CALL = ('\t\t"PeerAdd",\n\t\tc.id,\n\t\t&myID,\n\t)\n'
              "\tif err != nil {\n\t\tlogger.Error(err)\n\t\treturn err\n\t}\n")
_JOIN_IMPORT = """\t// tce-ipfs: connect to every peer the joined one knows, now and for a minute (a peer that
\t// joined just before us may not be in its peerset yet); see build/cluster.py.
\tc.wg.Add(1)
\tgo func() {
\t\tdefer c.wg.Done()
\t\tfor i := 0; i < 12; i++ {
\t\t\tvar joinedID api.ID
\t\t\tif err := c.rpcClient.CallContext(c.ctx, pid, "Cluster", "ID", struct{}{}, &joinedID); err == nil {
\t\t\t\tfor _, a := range joinedID.ClusterPeersAddresses {
\t\t\t\t\tif _, err := c.peerManager.ImportPeer(a.Value(), true, peerstore.PermanentAddrTTL); err != nil {
\t\t\t\t\t\tlogger.Debug(err)
\t\t\t\t\t}
\t\t\t\t}
\t\t\t}
\t\t\tselect {
\t\t\tcase <-c.ctx.Done():
\t\t\t\treturn
\t\t\tcase <-time.After(5 * time.Second):
\t\t\t}
\t\t}
\t}()
"""
_JOIN_PATCHES: tuple[Edit, ...] = (Edit("cluster.go", _JOIN_CALL, _JOIN_CALL + _JOIN_IMPORT),)

# Per version: the isolation patches (the cluster host off every network but the ones we allow) and
# the join patch. A version without an entry is refused.
PATCHES: dict[str, tuple[Edit, ...]] = {
    "v1.1.0": _HOST_PATCHES + _JOIN_PATCHES,
    "v1.0.8": _HOST_PATCHES + _JOIN_PATCHES,
}


@dataclass(frozen=True)
class ClusterBinaries:
    """The cached programs and what their manifest says."""

    service: Path
    ctl: Path
    version: str
    arch: Arch
    recipe: str
    raw: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {**self.raw, "service": str(self.service), "ctl": str(self.ctl)}


def normalize_version(version: str) -> str:
    """``1.1.0`` or ``v1.1.0`` -> ``v1.1.0``; anything else is a ``UsageError``."""
    return gomodule.release_tag(version, program="an ipfs-cluster", example=CLUSTER_VERSION, prerelease=False)


def recipe(version: str) -> dict[str, Any]:
    """Everything about a build besides version and arch; its hash is the cache key's recipe part."""
    return {
        "revision": RECIPE_REVISION,
        "programs": list(PROGRAMS),
        "ldflags": LDFLAGS,
        "trimpath": True,
        "cgo": False,
        "patches": [e.as_json() for e in PATCHES.get(normalize_version(version), ())],
    }


def recipe_id(version: str = CLUSTER_VERSION) -> str:
    return hashlib.sha256(json.dumps(recipe(version), sort_keys=True).encode()).hexdigest()[:16]


def version_dir(version: str) -> Path:
    return cache_dir() / "ipfs-cluster" / normalize_version(version)


def binary_dir(arch: Arch, version: str = CLUSTER_VERSION) -> Path:
    return version_dir(version) / recipe_id(version) / arch.info.name


def load(arch: Arch, version: str = CLUSTER_VERSION) -> ClusterBinaries | None:
    """The cached build's manifest when it matches the files on disk and the recipe, else None."""
    version = normalize_version(version)
    where = binary_dir(arch, version)
    try:
        raw = json.loads((where / MANIFEST_NAME).read_text())
        if raw["version"] != version or raw["arch"] != arch.info.name or raw["recipe"] != recipe_id(version):
            return None
        for name in PROGRAMS:
            entry = raw["programs"][name]
            st = (where / name).stat()
            if st.st_size != int(entry["size"]):
                return None
            changed = st.st_mtime_ns != entry.get("mtime_ns")
            if changed and gomodule.sha256_file(where / name) != entry["sha256"]:
                log.warning("cached %s changed on disk; rebuilding", where / name)
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ClusterBinaries(service=where / SERVICE, ctl=where / CTL, version=version, arch=arch,
                           recipe=str(raw["recipe"]), raw=raw)


def prepare_source(version: str) -> Path:
    """ipfs-cluster's source for ``version`` with the isolation patches, ready to build (cached)."""
    version = normalize_version(version)
    patches = PATCHES.get(version)
    if not patches:
        raise BuildError(f"no isolation patches for ipfs-cluster {version}: its libp2p host would map "
                         "ports on the router and look for public relays",
                         hint=f"build {CLUSTER_VERSION}, or add patches to cluster.PATCHES")
    rid = recipe_id(version)
    src = version_dir(version) / f"src-{rid}"
    marker = src / ".tce-ipfs-prepared"
    if marker.exists():
        return src
    what = f"preparing ipfs-cluster {version} source"
    with gomodule.build_lock(version_dir(version) / f"src-{rid}.lock", what):
        if marker.exists():
            return src
        log.info("fetching ipfs-cluster %s source (Go module proxy)", version)
        moddir = gomodule.fetch_module(CLUSTER_MODULE, version, version_dir(version) / "tmp",
                                   name="ipfs-cluster", releases=RELEASES)
        tmp = src.with_name(src.name + ".partial")
        for old in (src, tmp):
            if old.exists():
                shutil.rmtree(old)
        gomodule.writable_copy(moddir, tmp)
        _check_source_version(tmp, version)
        for edit in patches:
            log.debug("applying isolation patch: %s", edit)
            gomodule.edit_file(tmp, edit.path, edit.old, edit.new, count=edit.count,
                               owner=f"ipfs-cluster {version}", table="cluster.PATCHES")
        (tmp / marker.name).write_text(json.dumps(recipe(version), sort_keys=True) + "\n")
        tmp.rename(src)
    return src


def _check_source_version(src: Path, version: str) -> None:
    text = (src / "version" / "version.go").read_text() if (src / "version" / "version.go").exists() else ""
    m = re.search(r'semver\.MustParse\("([^"]+)"\)', text)
    if m and "v" + m.group(1) != version:
        raise BuildError(f"ipfs-cluster source for {version} says it is {m.group(1)}")


def build_args(out_dir: Path) -> list[str]:
    """One ``go build`` for both programs (they share most packages): ``-o DIR`` writes each by name."""
    return ["go", "build", "-buildvcs=false", "-trimpath", f"-ldflags={LDFLAGS}", "-o", f"{out_dir}/",
            *(f"./cmd/{name}" for name in PROGRAMS)]


def program_version(path: Path) -> str | None:
    """``1.1.0`` from ``<program> --version`` when ``path`` runs here (host arch), else None."""
    if not gomodule.runs_here(path):
        return None
    out = proc.output([path, "--version"], timeout=60, what=f"running {path.name} --version")
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else ""


def _build(arch: Arch, version: str, dest: Path) -> dict[str, Any]:
    src = prepare_source(version)
    log.info("building ipfs-cluster %s for %s (first time: a few minutes)", version, arch)
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    args = build_args(partial)
    env = gomodule.go_build_env(arch.go_env)
    started = time.monotonic()
    try:
        try:
            result = proc.run(args, env=env, cwd=src, timeout=BUILD_TIMEOUT,
                              what=f"building ipfs-cluster {version} for {arch}")
        except CommandFailed as exc:
            (dest / "build.log").write_text(exc.stderr)
            raise BuildError(f"building ipfs-cluster {version} for {arch} failed: {exc.message}",
                             hint=f"full log: {dest / 'build.log'}") from exc
        seconds = time.monotonic() - started
        (dest / "build.log").write_bytes(result.stderr or b"")
        for name in PROGRAMS:
            elf.validate(partial / name, arch)
            ran = program_version(partial / name)
            if ran is not None and "v" + ran != version:
                raise BuildError(f"built {name} says it is version {ran}, expected {version}")
        for name in PROGRAMS:
            os.replace(partial / name, dest / name)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("built ipfs-cluster %s for %s in %.0f s", version, arch, seconds)
    return {"seconds": round(seconds, 1),
            "build": {**recipe(version), "go": gomodule.go_version(), "env": dict(sorted(env.items())),
                      "command": args[:5] + args[-len(PROGRAMS):]}}


def ensure(arch: Arch | None = None, version: str = CLUSTER_VERSION, *,
           rebuild: bool = False) -> ClusterBinaries:
    """Validated static ``ipfs-cluster-service`` and ``ipfs-cluster-ctl`` for ``arch`` (default: this
    host's), built once into ``binary_dir(arch, version)``."""
    arch = arch or Arch.host()
    version = normalize_version(version)
    if not rebuild:
        hit = load(arch, version)
        if hit is not None:
            _validate(hit)
            return hit
    dest = binary_dir(arch, version)
    dest.mkdir(parents=True, exist_ok=True)
    with gomodule.build_lock(dest / ".lock", f"building ipfs-cluster {version} for {arch}"):
        hit = None if rebuild else load(arch, version)  # someone may have built it while we waited
        if hit is not None:
            _validate(hit)
            return hit
        (dest / MANIFEST_NAME).unlink(missing_ok=True)
        meta = _build(arch, version, dest)
        programs = {}
        for name in PROGRAMS:
            st = (dest / name).stat()
            programs[name] = {"sha256": gomodule.sha256_file(dest / name), "size": st.st_size,
                              "mtime_ns": st.st_mtime_ns}
        gomodule.write_manifest(dest / MANIFEST_NAME, {
            "version": version, "arch": arch.info.name, "recipe": recipe_id(version), "programs": programs,
            "created": datetime.now(UTC).isoformat(timespec="seconds"), **meta,
        })
    built = load(arch, version)
    if built is None:  # pragma: no cover - the manifest was written just now
        raise BuildError(f"ipfs-cluster {version} for {arch}: no usable build in {dest}")
    return built


def _validate(b: ClusterBinaries) -> None:
    elf.validate(b.service, b.arch)
    elf.validate(b.ctl, b.arch)

