"""What a kubo build is: the recipe (flags, plugins, source fixups, size patches, variants) as data.

``recipe(version, variant)`` is everything about a build besides version and arch; ``recipe_id()``
hashes it into the cache key (``build.kubo`` builds it). The steps (``Go``, ``Edit``, ``Remove``,
``Add``, ``Vendor``, ``StdEdit``) are data too, so the hash covers them, including a digest of our own
Go sources that ``Add`` copies in.

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

Variants: ``ensure(arch, variant=SEED)`` is the *seed role's* build: the same recipe plus
``SEED_PATCHES`` (the polite origin, ``build.superseed``; its Go sources in ``tcz-build/ipfs/
kubo-seed/``). Its recipe id, and so its cache directory, differs from the plain build's. Only the host
seed runs it; guests' ``ipfs.tcz`` is always the plain build, whose recipe is unchanged by variants.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from tce_ipfs.build import superseed
from tce_ipfs.build.gomodule import release_tag, tree_digest
from tce_ipfs.errors import BuildError, UsageError
from tce_ipfs.settings import KUBO_MODULE, KUBO_VERSION, recipes_dir

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
SEED_SOURCES = "ipfs/kubo-seed"  # the seed build's (build.superseed)
# Where Add/Vendor put whole modules inside kubo's source tree (Go skips directories starting with _).
LOCAL_MODULES = "_tce"


def slim_dir() -> Path:
    return recipes_dir() / SLIM_SOURCES


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
    """Copy ``source`` (a file or directory under ``tcz-build/<base>``, by default ``slim_dir()``) to
    ``path``, which must not exist. The recipe hash covers the source's content, so editing a stand-in
    rebuilds."""

    path: str
    source: str
    base: str = SLIM_SOURCES

    @property
    def source_path(self) -> Path:
        root = slim_dir() if self.base == SLIM_SOURCES else recipes_dir() / self.base
        return root / self.source

    def as_json(self) -> list[str]:
        where = self.source if self.base == SLIM_SOURCES else f"{self.base}/{self.source}"
        return ["add", self.path, where, tree_digest(self.source_path)]

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
    # Not a size change: machines found by mDNS dial each other one way first (the larger peer ID at
    # once, the other only if nothing connected within 2 s), so two that answer the same query cannot
    # meet in one simultaneous-open TCP connection and fail (kubo-slim/kubo/discovery.go).
    "mdns-one-way": (
        Add("core/node/libp2p/tce_discovery.go", "kubo/discovery.go"),
        Edit("core/node/libp2p/discovery.go",
             "func (dh *discoveryHandler) HandlePeerFound(p peer.AddrInfo) {\n",
             "func (dh *discoveryHandler) HandlePeerFound(p peer.AddrInfo) {\n"
             "\tif tceLeaveDialTo(dh.ctx, dh.host, p.ID) {\n\t\treturn\n\t}\n"),
    ),
    # Not a size change: the boot hook's one-start kubo. `ipfs daemon --init --init-config FILE` with
    # a FILE of only the keys to set (no identity) makes the repo inside the daemon's process (see
    # kubo-slim/kubo/bootinit.go); a whole config FILE still takes kubo's own path.
    "boot-init": (
        Add("cmd/ipfs/kubo/tce_bootinit.go", "kubo/bootinit.go"),
        Edit("cmd/ipfs/kubo/daemon.go", "\tif initialize && !fsrepo.IsInitialized(cctx.ConfigRoot) {\n",
             "\tif initialize && !fsrepo.IsInitialized(cctx.ConfigRoot) {\n"
             "\t\tif err := tceOverlayInit(req, cctx.ConfigRoot); err != nil {\n"
             "\t\t\treturn err\n\t\t}\n\t}\n"
             "\tif initialize && !fsrepo.IsInitialized(cctx.ConfigRoot) {\n"),
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

# Build variants: the plain build (guests, tests, tools) and the seed role's build.
PLAIN = ""
SEED = "seed"
VARIANTS = (PLAIN, SEED)

_BOXO = Vendor(superseed.BOXO_MODULE)

# The seed role's source patches, per version (build.superseed documents and measures them): boxo's
# bitswap engine gets the super-seeding hold, kubo passes it the LAN-neighbour test.
SEED_PATCHES: dict[str, tuple[Step, ...]] = {
    "v0.43.1": (
        _BOXO,
        *(Add(path.format(boxo=_BOXO.path), source, base=SEED_SOURCES)
          for path, source in superseed.FILES.items()),
        *(Edit(path.format(boxo=_BOXO.path), old, new) for path, old, new in superseed.EDITS),
    ),
}


def normalize_version(version: str) -> str:
    """``0.43.1`` or ``v0.43.1`` -> ``v0.43.1``; anything else is a ``UsageError``."""
    return release_tag(version, program="a kubo", example=KUBO_VERSION)


def variant_patches(version: str, variant: str) -> tuple[Step, ...]:
    """The extra source patches of ``variant`` (none for the plain build)."""
    if variant not in VARIANTS:
        raise UsageError(f"unknown kubo build variant {variant!r}", hint="use the plain build or 'seed'")
    if variant == PLAIN:
        return ()
    version = normalize_version(version)
    if version not in SEED_PATCHES:
        raise BuildError(f"no seed patch for kubo {version} (kuborecipe.SEED_PATCHES)",
                         hint="port build/superseed to this version, or run the seed with the plain build")
    return SEED_PATCHES[version]


def recipe(version: str, variant: str = PLAIN) -> dict[str, Any]:
    """Everything about a build besides version and arch; its hash is the cache key's recipe part.
    The plain build's recipe has no variant keys at all (so its key never changes because of them)."""
    extra = {"variant": variant, "variant_patches": [f.as_json() for f in variant_patches(version, variant)]}
    return {**_base_recipe(version), **(extra if variant else {})}


def _base_recipe(version: str) -> dict[str, Any]:
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


def recipe_id(version: str = KUBO_VERSION, variant: str = PLAIN) -> str:
    blob = json.dumps(recipe(version, variant), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


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
