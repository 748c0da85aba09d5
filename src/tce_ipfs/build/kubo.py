"""kubo's ``ipfs`` binary per arch: built from source with Go (module proxy), or taken from the user.

``ensure(arch)`` returns ``cache_dir()/kubo/<version>/<recipe>/<arch>/ipfs``, a static binary checked
by ``elf.validate``. Next to it, ``ipfs.json`` (the manifest) records version, arch, sha256, size, the
build recipe and how long the build took. A second call reads the manifest and returns at once.

The *recipe* (build tags, -ldflags, -gcflags, the plugin list, the per-version source fixups and size
patches, including a digest of our Go sources they add) is hashed into ``recipe_id()``, which is part
of the cache path: each recipe builds into its own directory, so checkouts with different recipes (two
branches) never rebuild over each other's binary. Builds hold a lock file per version+recipe+arch, so
concurrent callers (two pytest processes) build once and share the result.

How the binary is kept small (measured numbers in docs/kubo-size.md):
* ``CGO_ENABLED=0`` (static; TC has no matching libc), ``-trimpath``, ``-ldflags "-s -w"``;
* ``-tags nofuse``: no FUSE mount support (``ipfs mount``), which a TC node does not use;
* only the plugins in ``PRELOAD_PLUGINS`` are compiled in (upstream preloads ten);
* ``SLIM_PATCHES``: source changes that unlink what a TC boot and seed node never runs: pebble (kubo's
  config imports it for one constant); every transport but TCP; AutoTLS; OpenTelemetry tracing and
  metrics SDKs; pubsub; a few commands (p2p, update, diag, pin remote); the delegated-routing server
  and /debug/pprof. Most are small stand-in Go modules and packages of our own (``tcz-build/ipfs/
  kubo-slim/``, one README there says what each replaces and what a config that asks for it gets);
  the rest are one-line edits of kubo's source;
* ``-tags nethttpomithttp2``: net/http without its bundled HTTP/2 (API and gateway speak HTTP/1.1);
* ``-gcflags=all=-l``: no inlining. Smaller code; kubo's hot paths (hashing, crypto) are assembly,
  so a small TC node does not notice;
* ``STD_PATCHES``: text/template without method calls by name, applied to the standard library
  through ``go build -overlay`` (``-overlay`` changes nothing outside this build). One reachable
  ``reflect.Value.MethodByName`` with a computed name makes the linker keep every exported method of
  every type; without it, 3.4 MB fewer. kubo's templates (help, gateway pages, progress bars) use
  fields and functions only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

from tce_ipfs import proc
from tce_ipfs.arch import Arch
from tce_ipfs.build import elf
from tce_ipfs.errors import BuildError, CommandFailed, UsageError
from tce_ipfs.settings import KUBO_MODULE, KUBO_VERSION, cache_dir, recipes_dir

log = logging.getLogger(__name__)

# Bump when the build procedure changes in a way the other recipe fields do not show.
RECIPE_REVISION = 2  # 2: cache path keyed by recipe; Remove/Add/Vendor steps; std-library overlay

# Plugins kubo preloads upstream (plugin/loader/preload_list); directory names under plugin/plugins.
UPSTREAM_PLUGINS: tuple[str, ...] = (
    "git", "dagjose", "badgerds", "flatfs", "levelds", "pebbleds", "peerlog", "fxtest", "nopfs", "telemetry",
)

# The plugins our binary preloads. flatfs + levelds make kubo's default datastore (`ipfs init`
# writes the flatfs-levelds spec), so init/daemon/add/cat work unchanged. Dropped, and why a TC node
# does not miss them:
#   badgerds, pebbleds  other datastores (`ipfs init --profile badgerds|pebbleds` stops working)
#   git, dagjose        IPLD codecs for git objects and JOSE; we only move UnixFS files
#   peerlog             logs peer events, off by default
#   fxtest              a test hook plugin
#   nopfs               content blocking from denylists; a private TC repo has none
#   telemetry           reports usage to a public endpoint; a TC node must never call out, so not
#                       compiling it in is the strongest "off". Config keys under
#                       Plugins.Plugins.telemetry are still accepted (the loader ignores
#                       entries for plugins it does not have).
PRELOAD_PLUGINS: tuple[str, ...] = ("flatfs", "levelds")

# nofuse: no `ipfs mount` (FUSE). nethttpomithttp2: the standard library's net/http without its
# bundled HTTP/2 (the RPC API and gateway are HTTP/1.1 on loopback; clients fall back to HTTP/1.1).
BUILD_TAGS: tuple[str, ...] = ("nofuse", "nethttpomithttp2")
LDFLAGS = "-s -w"
GCFLAGS = "all=-l"

# Our Go sources for the slim build: stand-in modules and packages, replacement files (README there).
SLIM_SOURCES = "ipfs/kubo-slim"  # under tcz-build/
# Where Add/Vendor put whole modules inside kubo's source tree (Go skips directories starting with _).
LOCAL_MODULES = "_tce"


def slim_dir() -> Path:
    return recipes_dir() / SLIM_SOURCES


def tree_digest(path: Path) -> str:
    """sha256 over a file, or over every file below a directory (relative names and contents)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(f.relative_to(path.parent if f == path else path).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class Go:
    """Run ``go <args>`` in the source directory."""

    args: tuple[str, ...]

    def as_json(self) -> list[str]:
        return ["go", *self.args]

    def __str__(self) -> str:
        return "go " + " ".join(self.args)


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` by ``new`` in one source file; ``old`` must occur exactly ``count`` times, so an
    edit that no longer fits the source fails loudly instead of silently doing nothing."""

    path: str
    old: str
    new: str
    count: int = 1

    def as_json(self) -> list[str]:
        return ["edit", self.path, self.old, self.new, str(self.count)]

    def __str__(self) -> str:
        return f"edit {self.path} ({self.count}x {self.old.strip()[:40]!r})"


@dataclass(frozen=True)
class Remove:
    """Delete a file or directory of the source tree; it must exist (a renamed file fails loudly)."""

    path: str

    def as_json(self) -> list[str]:
        return ["remove", self.path]

    def __str__(self) -> str:
        return f"remove {self.path}"


@dataclass(frozen=True)
class Add:
    """Copy ``source`` (a file or directory under ``slim_dir()``) to ``path``, which must not exist.
    The recipe hash covers the source's content, so editing a stand-in rebuilds."""

    path: str
    source: str

    def as_json(self) -> list[str]:
        return ["add", self.path, self.source, tree_digest(slim_dir() / self.source)]

    def __str__(self) -> str:
        return f"add {self.path} <- {self.source}"


@dataclass(frozen=True)
class Vendor:
    """Copy the version of ``module`` that go.mod selects from the module cache into
    ``_tce/<module>`` and replace the module by that copy, so later steps can change its files."""

    module: str

    @property
    def path(self) -> str:
        return f"{LOCAL_MODULES}/{self.module}"

    def as_json(self) -> list[str]:
        return ["vendor", self.module]

    def __str__(self) -> str:
        return f"vendor {self.module} into {self.path}"


@dataclass(frozen=True)
class StdEdit:
    """An ``Edit`` of a file of Go's standard library (``path`` under ``$GOROOT/src``), for this build
    only: at build time the file of the Go that builds is copied, edited and handed to
    ``go build -overlay``. ``old`` must occur ``count`` times in that Go's file."""

    path: str
    old: str
    new: str
    count: int = 1

    def as_json(self) -> list[str]:
        return ["std-edit", self.path, self.old, self.new, str(self.count)]

    def __str__(self) -> str:
        return f"std-edit {self.path} ({self.count}x {self.old.strip()[:40]!r})"


Step: TypeAlias = Go | Edit | Remove | Add | Vendor


def stand_in(module: str, source: str) -> tuple[Step, ...]:
    """Replace ``module`` by our stand-in module ``modules/<source>`` (a go.mod and the few names
    kubo uses, which fail or do nothing; see the README in ``slim_dir()``)."""
    path = f"{LOCAL_MODULES}/{module}"
    return (Add(path, f"modules/{source}"), Go(("mod", "edit", f"-replace={module}=./{path}")))


def stand_in_package(module: Vendor, package: str, source: str) -> tuple[Step, ...]:
    """Replace package ``package`` of a vendored module by our stand-in ``source``."""
    path = f"{module.path}/{package}"
    return (Remove(path), Add(path, source))


# Changes a kubo release's source needs before it builds from the Go module proxy at all, per version,
# applied in order. Only what the proxy forces on us belongs here.
SOURCE_FIXUPS: dict[str, tuple[Step, ...]] = {
    # v0.43.1's go.mod has `replace github.com/libp2p/go-libp2p => github.com/lidel/go-libp2p <pseudo>`
    # (a fork it needs for quic-go >= v0.62 / webtransport-go v0.13). The module proxy refuses that
    # fork (403), so the build cannot fetch it. Upstream go-libp2p v0.49.0 (the required version) does
    # not compile against webtransport-go v0.13 ("undefined: webtransport.Dialer"); v0.51.0 does and
    # brings quic-go v0.64.1. So: drop the replace, then require v0.51.0. `ipfs version` still says
    # 0.43.1 and init/daemon/add/cat work.
    "v0.43.1": (
        Go(("mod", "edit", "-dropreplace", "github.com/libp2p/go-libp2p")),
        Go(("get", "github.com/libp2p/go-libp2p@v0.51.0")),
    ),
}

_LIBP2P = Vendor("github.com/libp2p/go-libp2p")


def _drop_listen_address(addr: str) -> Edit:
    """Take one default listen address out of the config `ipfs init` writes."""
    return Edit("config/init.go", f'\t\t\t"{addr}",\n', "")


# Size-only source changes for kubo v0.43.1, in named groups applied in this order (one row each in
# docs/kubo-size.md, with what it saved on x86_64). Each removes code a TC boot and seed node never
# runs; tcz-build/ipfs/kubo-slim/README.md says what each stand-in replaces and what a config that
# asks for the feature gets. What the boot hook, the agent and the host side call (init, config,
# daemon, add, cat, ls, get, files, pin, dag incl. CAR export/import, block, refs, swarm, id, key, name
# publish/resolve, routing/dht, provide, stats, bitswap, repo, filestore, the gateway's /ipfs/ and
# /ipns/ paths) and what later modes need (DHT client, AutoNAT, circuit-relay client, hole punching,
# NAT port mapping, mDNS, delegated routing client, /debug/metrics/prometheus) are all kept.
SLIM_GROUPS_V0_43_1: dict[str, tuple[Step, ...]] = {
    # config/init.go imports cockroachdb/pebble only for the constant pebble.FormatNewest (written
    # into pebbleds datastore specs). With the pebbleds plugin not compiled in, that import alone
    # links pebble and its dependencies (-6.6 MB). 24 is FormatNewest of the pebble/v2 v2.1.7 that
    # v0.43.1 requires: generated configs are unchanged.
    "pebble": (
        Edit("config/init.go", "int(pebble.FormatNewest)", "24", count=4),
        Edit("config/init.go", '\t"github.com/cockroachdb/pebble/v2"\n', ""),
    ),
    # Upstream's tracing.go builds exporters from OTEL_* variables (OTLP over gRPC and HTTP, zipkin)
    # and the tracing SDK. Ours is a no-op provider: OTEL_TRACES_EXPORTER is ignored by this binary.
    "tracing": (
        Remove("tracing/tracing.go"),
        Add("tracing/tracing.go", "kubo/tracing.go"),
    ),
    # go-libp2p's WebTransport, WebRTC-direct and WebSocket transports (for browsers) become
    # stand-ins whose constructors fail with "not in this build" (pion, webtransport-go, http3 and
    # gorilla/websocket are not linked). kubo's defaults for them become off, so a default config
    # starts; one that turns a transport on stops with that message.
    "browser-transports": (
        _LIBP2P,
        *stand_in_package(_LIBP2P, "p2p/transport/webtransport", "libp2p/webtransport"),
        *stand_in_package(_LIBP2P, "p2p/transport/webrtc", "libp2p/webrtc"),
        *stand_in_package(_LIBP2P, "p2p/transport/websocket", "libp2p/websocket"),
        Edit("core/node/libp2p/transport.go", "Network.WebTransport.WithDefault(!privateNetworkEnabled)",
             "Network.WebTransport.WithDefault(false)"),
        Edit("core/node/libp2p/transport.go", "Network.WebRTCDirect.WithDefault(!privateNetworkEnabled)",
             "Network.WebRTCDirect.WithDefault(false)"),
        Edit("core/node/libp2p/transport.go", "Network.Websocket.WithDefault(true)",
             "Network.Websocket.WithDefault(false)"),
        Edit("core/node/groups.go", "Network.Websocket.WithDefault(true)",
             "Network.Websocket.WithDefault(false)"),
        _drop_listen_address("/ip4/0.0.0.0/udp/4001/webrtc-direct"),
        _drop_listen_address("/ip4/0.0.0.0/udp/4001/quic-v1/webtransport"),
        _drop_listen_address("/ip6/::/udp/4001/webrtc-direct"),
        _drop_listen_address("/ip6/::/udp/4001/quic-v1/webtransport"),
    ),
    # QUIC the same way: TCP is the only transport left (-0.6 MiB). A later public-network mode can
    # take this group out to get QUIC back (its hole punching also works over TCP).
    "quic": (
        *stand_in_package(_LIBP2P, "p2p/transport/quic", "libp2p/quic"),
        *stand_in_package(_LIBP2P, "p2p/transport/quicreuse", "libp2p/quicreuse"),
        Edit("core/node/libp2p/transport.go", "Network.QUIC.WithDefault(!privateNetworkEnabled)",
             "Network.QUIC.WithDefault(false)"),
        _drop_listen_address("/ip4/0.0.0.0/udp/4001/quic-v1"),
        _drop_listen_address("/ip6/::/udp/4001/quic-v1"),
    ),
    # AutoTLS registers the node with a public service and fetches a Let's Encrypt certificate for
    # Secure WebSockets. No WebSocket, no calling out: stand-ins for p2p-forge and certmagic (with
    # acmez, libdns), and the default becomes off.
    "autotls": (
        *stand_in("github.com/ipshipyard/p2p-forge", "p2p-forge"),
        *stand_in("github.com/caddyserver/certmagic", "certmagic"),
        Edit("config/autotls.go", "DefaultAutoTLSEnabled           = true",
             "DefaultAutoTLSEnabled           = false"),
    ),
    # With no tracing, the HTTP instrumentation, the propagator zoo and the eBPF hook have nothing to
    # do; the metrics SDK and its Prometheus bridge only re-export what libraries record through the
    # OpenTelemetry API. /debug/metrics/prometheus stays, with every metric registered with the
    # Prometheus client directly.
    "opentelemetry": (
        *stand_in("go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", "otelhttp"),
        *stand_in("go.opentelemetry.io/contrib/propagators/autoprop", "autoprop"),
        *stand_in("go.opentelemetry.io/auto/sdk", "auto-sdk"),
        *stand_in("go.opentelemetry.io/otel/sdk/metric", "otel-sdk-metric"),
        *stand_in("go.opentelemetry.io/otel/exporters/prometheus", "otel-prometheus"),
    ),
    # Pubsub (off by default; `ipfs pubsub`, IPNS over pubsub): stand-ins whose constructors fail,
    # so Pubsub.Enabled=true or Ipns.UsePubsub=true stop the daemon with a clear message.
    "pubsub": (
        *stand_in("github.com/libp2p/go-libp2p-pubsub", "pubsub"),
        *stand_in("github.com/libp2p/go-libp2p-pubsub-router", "pubsub-router"),
        Edit("core/commands/name/name.go", '\t\t"pubsub":  IpnsPubsubCmd,\n', ""),
        Remove("core/commands/name/ipnsps.go"),
    ),
    # Commands and services a TC node has no use for: `ipfs p2p` (stream mounting), `ipfs update`
    # (downloads kubo releases from GitHub), `ipfs diag` (profiles, system report), `ipfs pin remote`
    # and the daemon's MFS-to-remote-pinning-service loop.
    "commands": (
        Edit("core/commands/root.go", '\t"p2p":       P2PCmd,\n', ""),
        Remove("core/commands/p2p.go"),
        Edit("core/commands/root.go", '\t"update":    UpdateCmd,\n', ""),
        Remove("core/commands/update.go"),
        Remove("core/commands/update_github.go"),
        Edit("core/commands/root.go", '\t"diag":      DiagCmd,\n', ""),
        Remove("core/commands/diag.go"),
        Remove("core/commands/sysdiag.go"),
        Remove("core/commands/profile.go"),
        Edit("core/commands/pin/pin.go", '\t\t"remote": remotePinCmd,\n', ""),
        Remove("core/commands/pin/remotepin.go"),
        Add("core/commands/pin/tce_remotepin.go", "kubo/pin_shared.go"),
        Edit("cmd/ipfs/kubo/daemon.go",
             "\tstartPinMFS(cctx, daemonConfigPollInterval, &ipfsPinMFSNode{node})\n", ""),
        Remove("cmd/ipfs/kubo/pinmfs.go"),
    ),
    # Served to others over HTTP, never by a TC node: the delegated-routing server (/routing/v1 on
    # the gateway, Gateway.ExposeRoutingAPI) and the Go profiler at /debug/pprof.
    "http-services": (
        Edit("cmd/ipfs/kubo/daemon.go", "\t\topts = append(opts, corehttp.RoutingOption())\n", ""),
        Remove("core/corehttp/routing.go"),
        Edit("cmd/ipfs/kubo/daemon.go", '\t_ "net/http/pprof"\n', ""),
    ),
}

# Size-only source changes per version (a version without an entry builds unpatched, just bigger).
SLIM_PATCHES: dict[str, tuple[Step, ...]] = {
    "v0.43.1": tuple(step for group in SLIM_GROUPS_V0_43_1.values() for step in group),
}

# Edits of Go's standard library for this build only (``go build -overlay``), per kubo version.
STD_PATCHES: dict[str, tuple[StdEdit, ...]] = {
    "v0.43.1": (
        # text/template resolves {{.Name}} as a method first, through reflect.Value.MethodByName with
        # the name from the template. A reachable MethodByName with a computed name makes the linker
        # keep every exported method of every reachable type (-3.4 MB when it goes). kubo's
        # templates (command help, shell completion, progress bars, the gateway's directory, DAG and
        # error pages) use struct fields and template functions only, so they render the same;
        # a template that calls a method by name fails with "can't evaluate field" instead.
        StdEdit("text/template/exec.go", "ptr.MethodByName(fieldName)",
                "(reflect.Value{}) /* tce-ipfs: no method calls by name */"),
    ),
}

BUILD_TIMEOUT = 3600.0  # a cold build for a new arch on 2 cores takes minutes; this is a hang guard
MANIFEST_NAME = "ipfs.json"
_VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class KuboBinary:
    """What the manifest next to a cached binary says."""

    path: Path
    version: str
    arch: Arch
    sha256: str
    size: int
    source: str  # "built" or "given" (copied from --from PATH)
    recipe: str | None  # recipe_id() for built binaries
    seconds: float
    raw: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {**self.raw, "path": str(self.path)}


def normalize_version(version: str) -> str:
    """``0.43.1`` or ``v0.43.1`` -> ``v0.43.1``; anything else is a ``UsageError``."""
    v = version.strip()
    if v and v[0].isdigit():
        v = "v" + v
    if not _VERSION_RE.match(v):
        raise UsageError(f"not a kubo version: {version!r}", hint=f"use a release tag like {KUBO_VERSION}")
    return v


def recipe(version: str) -> dict[str, Any]:
    """Everything about a build besides version and arch; its hash is the cache key's recipe part."""
    return {
        "revision": RECIPE_REVISION,
        "tags": list(BUILD_TAGS),
        "ldflags": LDFLAGS,
        "gcflags": GCFLAGS,
        "trimpath": True,
        "cgo": False,
        "plugins": list(PRELOAD_PLUGINS),
        "fixups": [f.as_json() for f in SOURCE_FIXUPS.get(normalize_version(version), ())],
        "patches": [f.as_json() for f in SLIM_PATCHES.get(normalize_version(version), ())],
        "std_patches": [f.as_json() for f in STD_PATCHES.get(normalize_version(version), ())],
    }


def recipe_id(version: str = KUBO_VERSION) -> str:
    blob = json.dumps(recipe(version), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def version_dir(version: str) -> Path:
    return cache_dir() / "kubo" / normalize_version(version)


def binary_path(arch: Arch, version: str = KUBO_VERSION) -> Path:
    """Where the binary for the current recipe lives: ``kubo/<version>/<recipe_id>/<arch>/ipfs``."""
    return version_dir(version) / recipe_id(version) / arch.info.name / "ipfs"


def preload_go(plugins: tuple[str, ...] = PRELOAD_PLUGINS) -> str:
    """The plugin/loader/preload.go that preloads exactly ``plugins``."""
    imports = "".join(
        f'\tplugin{p} "{KUBO_MODULE}/plugin/plugins/{p}"\n' for p in plugins
    )
    calls = "".join(f"\tPreload(plugin{p}.Plugins...)\n" for p in plugins)
    return (
        "package loader\n\n"
        "// Generated by tce-ipfs (kubo.PRELOAD_PLUGINS); replaces kubo's generated preload.go.\n\n"
        f"import (\n{imports})\n\n"
        f"func init() {{\n{calls}}}\n"
    )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(lock_path: Path, what: str) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process %s (lock %s)", what, lock_path)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load(arch: Arch, version: str = KUBO_VERSION) -> KuboBinary | None:
    """The cached binary's manifest, or None when there is no (readable) one."""
    path = binary_path(arch, version)
    try:
        raw = json.loads((path.parent / MANIFEST_NAME).read_text())
        return KuboBinary(
            path=path,
            version=str(raw["version"]),
            arch=Arch.parse(str(raw["arch"])),
            sha256=str(raw["sha256"]),
            size=int(raw["size"]),
            source=str(raw["source"]),
            recipe=raw.get("recipe"),
            seconds=float(raw.get("seconds", 0.0)),
            raw=raw,
        )
    except (OSError, ValueError, KeyError, TypeError, UsageError):
        return None


def _cached(arch: Arch, version: str, *, accept_given: bool) -> KuboBinary | None:
    """The cached binary if its manifest matches the file and the current recipe; else None."""
    m = load(arch, version)
    if m is None or m.version != version or m.arch is not arch:
        return None
    if m.source == "built" and m.recipe != recipe_id(version):
        log.info("kubo %s for %s was built with another recipe; rebuilding", version, arch)
        return None
    if m.source == "given" and not accept_given:
        return None
    try:
        st = m.path.stat()
    except FileNotFoundError:
        return None
    if st.st_size != m.size:
        return None
    if st.st_mtime_ns != m.raw.get("mtime_ns") and sha256_file(m.path) != m.sha256:
        log.warning("cached kubo %s changed on disk; replacing it", m.path)
        return None
    elf.validate(m.path, arch)
    return m


def _go_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {"GOFLAGS": "-mod=mod"}
    if extra:
        env.update(extra)
    return env


def go_version() -> str:
    return proc.output(["go", "env", "GOVERSION"], what="asking go for its version")


def _fetch_source(version: str, work: Path) -> Path:
    """Download ``kubo@version`` through the module proxy; return its (read-only) module cache dir."""
    work.mkdir(parents=True, exist_ok=True)
    try:
        out = proc.output(["go", "mod", "download", "-json", f"{KUBO_MODULE}@{version}"],
                          env=_go_env(), cwd=work, timeout=1800, what=f"downloading kubo {version}")
    except CommandFailed as exc:
        raise BuildError(f"cannot download kubo {version} from the Go module proxy: {exc.message}",
                         hint="check the version exists (https://github.com/ipfs/kubo/releases) "
                              "and that GOPROXY is reachable") from exc
    data = json.loads(out)
    if data.get("Error"):
        raise BuildError(f"cannot download kubo {version}: {data['Error']}")
    return Path(data["Dir"])


def _copy_writable(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True)
    for root, dirs, files in os.walk(dst):
        for name in dirs + files:
            p = Path(root) / name
            if not p.is_symlink():
                mode = p.stat().st_mode
                p.chmod(mode | stat.S_IWUSR)
    dst.chmod(dst.stat().st_mode | stat.S_IWUSR)


def prepare_source(version: str) -> Path:
    """kubo's source for ``version`` with our fixups and plugin list, ready to build (cached)."""
    version = normalize_version(version)
    rid = recipe_id(version)
    src = version_dir(version) / f"src-{rid}"
    marker = src / ".tce-ipfs-prepared"
    if marker.exists():
        return src
    with _locked(version_dir(version) / f"src-{rid}.lock", f"preparing kubo {version} source"):
        if marker.exists():
            return src
        log.info("fetching kubo %s source (Go module proxy)", version)
        moddir = _fetch_source(version, version_dir(version) / "tmp")
        if src.exists():
            shutil.rmtree(src)
        tmp = src.with_name(src.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        _copy_writable(moddir, tmp)
        _check_source_version(tmp, version)
        for step in SOURCE_FIXUPS.get(version, ()):
            log.info("applying source fixup: %s", step)
            _apply(step, tmp, version, "kubo.SOURCE_FIXUPS")
        patches = SLIM_PATCHES.get(version, ())
        if not patches:
            log.warning("no size patches for kubo %s (kubo.SLIM_PATCHES): the binary will be larger", version)
        for step in patches:
            log.debug("applying size patch: %s", step)
            _apply(step, tmp, version, "kubo.SLIM_PATCHES")
        plugin_dir = tmp / "plugin" / "plugins"
        missing = [p for p in PRELOAD_PLUGINS if not (plugin_dir / p).is_dir()]
        if missing:
            raise BuildError(f"kubo {version} has no plugin(s) {', '.join(missing)} in plugin/plugins",
                             hint="adjust kubo.PRELOAD_PLUGINS for this version")
        (tmp / "plugin" / "loader" / "preload.go").write_text(preload_go())
        (tmp / ".tce-ipfs-prepared").write_text(json.dumps(recipe(version), sort_keys=True) + "\n")
        tmp.rename(src)
    return src


def _go(args: list[str], src: Path, what: str, table: str) -> str:
    try:
        return proc.output(["go", *args], env=_go_env(), cwd=src, timeout=1800, what=what)
    except CommandFailed as exc:
        raise BuildError(exc.message, hint=f"see {table}") from exc


def _apply(step: Step, src: Path, version: str, table: str) -> None:
    if isinstance(step, Go):
        _go(list(step.args), src, f"source step `{step}` for kubo {version}", table)
    elif isinstance(step, Edit):
        _edit_file(src, step.path, step.old, step.new, step.count, f"kubo {version}", table)
    elif isinstance(step, Remove):
        target = src / step.path
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        else:
            raise BuildError(f"kubo {version} has no {step.path} to remove",
                             hint=f"update {table} for this version")
    elif isinstance(step, Add):
        source, target = slim_dir() / step.source, src / step.path
        if not source.exists():
            raise BuildError(f"{source} is missing (a kubo build input of this checkout)",
                             hint=f"see {table}")
        if target.exists():
            raise BuildError(f"kubo {version} already has {step.path}; {step} would overwrite it",
                             hint=f"update {table} for this version")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    else:
        what = f"vendoring {step.module} for kubo {version}"
        selected = _go(["list", "-m", "-f", "{{.Version}}", step.module], src, what, table).strip()
        info = json.loads(_go(["mod", "download", "-json", f"{step.module}@{selected}"], src, what, table))
        if info.get("Error") or not info.get("Dir"):
            raise BuildError(f"cannot download {step.module}@{selected}: {info.get('Error', 'no Dir')}")
        _copy_writable(Path(info["Dir"]), src / step.path)
        _go(["mod", "edit", f"-replace={step.module}=./{step.path}"], src, what, table)


def _edit_file(root: Path, rel: str, old: str, new: str, count: int, owner: str, table: str) -> None:
    """Replace ``old`` (exactly ``count`` times) in ``root/rel``; ``owner`` names the tree in errors."""
    target = root / rel
    try:
        text = target.read_text()
    except FileNotFoundError:
        raise BuildError(f"{owner} has no {rel} to patch", hint=f"see {table}") from None
    found = text.count(old)
    if found != count:
        raise BuildError(f"patching {owner} {rel}: expected {count} occurrence(s) of {old.strip()!r}, "
                         f"found {found}", hint=f"update {table} for this version")
    target.write_text(text.replace(old, new))


def _check_source_version(src: Path, version: str) -> None:
    text = (src / "version.go").read_text() if (src / "version.go").exists() else ""
    m = re.search(r'CurrentVersionNumber\s*=\s*"([^"]+)"', text)
    if m and "v" + m.group(1) != version:
        raise BuildError(f"kubo source for {version} says it is {m.group(1)}")


def build_args(arch: Arch, out: Path, overlay: Path | None = None) -> list[str]:
    return [
        "go", "build", "-buildvcs=false", "-trimpath",
        "-tags", ",".join(BUILD_TAGS),
        f"-ldflags={LDFLAGS}",
        f"-gcflags={GCFLAGS}",
        *([f"-overlay={overlay}"] if overlay else []),
        "-o", str(out),
        "./cmd/ipfs",
    ]


def std_overlay(version: str, work: Path) -> Path | None:
    """Write ``STD_PATCHES`` for ``version`` as a ``go build -overlay`` file under ``work``: each
    edited standard-library file is a copy of the building Go's own file with the edit applied
    (so the overlay always matches that Go). None when there is nothing to patch."""
    edits = STD_PATCHES.get(normalize_version(version), ())
    if not edits:
        return None
    goroot = Path(proc.output(["go", "env", "GOROOT"], what="asking go for GOROOT").strip())
    owner = f"Go {go_version()}'s standard library ({goroot / 'src'})"
    if work.exists():
        shutil.rmtree(work)
    replace: dict[str, str] = {}
    for e in edits:
        original = goroot / "src" / e.path
        if not original.is_file():
            raise BuildError(f"{owner} has no {e.path} to patch", hint="update kubo.STD_PATCHES for this Go")
        copy = work / "src" / e.path
        if str(original) not in replace:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(original, copy)
            replace[str(original)] = str(copy)
        _edit_file(work / "src", e.path, e.old, e.new, e.count, owner, "kubo.STD_PATCHES")
    overlay = work / "overlay.json"
    overlay.write_text(json.dumps({"Replace": replace}, indent=2, sort_keys=True) + "\n")
    return overlay


def _host_version(path: Path) -> str | None:
    """``ipfs version --number`` when ``path`` runs here (host arch), else None."""
    try:
        host = Arch.host()
    except UsageError:
        return None
    if elf.inspect(path).arch is not host:
        return None
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-kubo-") as repo:
        out = proc.output([path, "version", "--number"], env={"IPFS_PATH": repo}, timeout=60,
                          what=f"running {path} version")
    return out.splitlines()[-1].strip() if out else ""


def _build(arch: Arch, version: str, dest: Path) -> dict[str, Any]:
    src = prepare_source(version)
    log.info("building kubo %s for %s (first time: a few minutes)", version, arch)
    out = dest.with_name(f".ipfs.{os.getpid()}.partial")
    args = build_args(arch, out, std_overlay(version, dest.parent / "overlay"))
    started = time.monotonic()
    try:
        result = proc.run(args, env=_go_env(arch.go_env), cwd=src, timeout=BUILD_TIMEOUT,
                          what=f"building kubo {version} for {arch}")
    except CommandFailed as exc:
        (dest.parent / "build.log").write_text(exc.stderr)
        out.unlink(missing_ok=True)
        raise BuildError(f"building kubo {version} for {arch} failed: {exc.message}",
                         hint=f"full log: {dest.parent / 'build.log'}") from exc
    seconds = time.monotonic() - started
    (dest.parent / "build.log").write_bytes(result.stderr or b"")
    try:
        elf.validate(out, arch)
        ran = _host_version(out)
        if ran is not None and "v" + ran != version:
            raise BuildError(f"built kubo says it is version {ran}, expected {version}")
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    os.replace(out, dest)
    log.info("built kubo %s for %s in %.0f s (%.1f MB)", version, arch, seconds, dest.stat().st_size / 1e6)
    env = {k: v for k, v in sorted(_go_env(arch.go_env).items())}
    return {
        "source": "built",
        "recipe": recipe_id(version),
        "build": {**recipe(version), "go": go_version(), "env": env, "command": args[:-3] + args[-1:]},
        "seconds": round(seconds, 1),
    }


def _take(arch: Arch, version: str, given: Path, dest: Path) -> dict[str, Any]:
    info = elf.validate(given, arch)
    ran = _host_version(given)
    if ran is not None and "v" + ran != version:
        raise UsageError(f"{given} is kubo {ran}, expected {version}",
                         hint=f"pass --version v{ran} to store it under its own version")
    if ran is None:
        log.warning("cannot run a %s binary here; trusting that %s is kubo %s", arch, given, version)
    tmp = dest.with_name(f".ipfs.{os.getpid()}.partial")
    shutil.copyfile(given, tmp)
    tmp.chmod(0o755)
    os.replace(tmp, dest)
    return {"source": "given", "from": str(given.resolve()), "recipe": None, "seconds": 0.0,
            "elf": info.as_dict() | {"path": str(dest)}}


def ensure(arch: Arch, version: str = KUBO_VERSION, *, from_path: Path | None = None,
           rebuild: bool = False) -> Path:
    """A validated static kubo ``ipfs`` for ``arch`` at ``cache_dir()/kubo/<version>/<arch>/ipfs``.

    Built from source the first time (or when the recipe changed, or with ``rebuild``); with
    ``from_path``, that binary is validated and copied in instead. A binary given earlier with
    ``from_path`` is reused by later calls without it (until ``rebuild``).
    """
    version = normalize_version(version)
    dest = binary_path(arch, version)
    if from_path is not None:
        from_path = Path(from_path)
        elf.validate(from_path, arch)  # fail before taking any lock
    elif not rebuild:
        hit = _cached(arch, version, accept_given=True)
        if hit is not None:
            return hit.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest.parent / ".lock", f"building kubo {version} for {arch}"):
        if from_path is not None:
            m = load(arch, version)
            if m is not None and m.source == "given" and dest.exists() and m.sha256 == sha256_file(from_path):
                return dest
            meta = _take(arch, version, from_path, dest)
        else:
            # Someone may have finished the same build while we waited for the lock.
            hit = None if rebuild else _cached(arch, version, accept_given=True)
            if hit is not None:
                return hit.path
            meta = _build(arch, version, dest)
        try:
            elf.validate(dest, arch)  # _build/_take checked already; this guards the cache itself
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        st = dest.stat()
        manifest = {
            "version": version,
            "arch": arch.info.name,
            "sha256": sha256_file(dest),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **meta,
        }
        _write_json_atomic(dest.parent / MANIFEST_NAME, manifest)
    return dest
