"""Talking to a kubo RPC API through ``ipfshttpclient`` 0.7.0, with our own version policy.

ipfshttpclient's ``connect()`` refuses any daemon newer than go-ipfs 0.8, so ``client()`` builds the
``Client`` directly and checks the version itself against ``SUPPORTED``. The helpers below are the
calls the project uses, each tested against a real kubo (tests/test_node.py); where ipfshttpclient has
no binding (``stats/bw``) or its binding no longer matches kubo, the helper sends the request itself
through the client's own HTTP layer.

Also used on the booted Tiny Core machine by the agent: standard library + ipfshttpclient only.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipfshttpclient
import ipfshttpclient.exceptions

from tce_ipfs.errors import NodeError

if TYPE_CHECKING:  # only the type: what imports rpc (the agent on TC too) does not need duplex
    from tce_ipfs.ipfs import duplex

# ipfshttpclient 0.7.0 passes urllib3 a `strict=` argument that urllib3 2.x warns about on every
# connection; harmless, and noise in every command's output.
warnings.filterwarnings("ignore", message="The 'strict' parameter is no longer needed",
                        category=FutureWarning)

DEFAULT_API = "/ip4/127.0.0.1/tcp/5001/http"

# Bytes per read when streaming files to /add (ipfshttpclient's default is 8 KiB: measurably slower
# for a 500 MB repo, the Python side becoming the bottleneck).
UPLOAD_CHUNK = 256 * 1024

# kubo versions we accept: [minimum, maximum). 0.2x..0.4x; the calls below are tested on 0.43.
SUPPORTED = ((0, 20, 0), (0, 50, 0))

# kubo's RPC API is POST-only and answers JSON; these are the error types ipfshttpclient raises.
ClientError = ipfshttpclient.exceptions.Error
CommunicationError = ipfshttpclient.exceptions.CommunicationError

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int, int]:
    """``"0.43.1"`` / ``"0.43.0-rc1"`` / ``"v0.43.1"`` -> ``(0, 43, 1)``."""
    m = _VERSION_RE.match(text.strip())
    if not m:
        raise NodeError(f"cannot parse IPFS daemon version {text!r}")
    return int(m[1]), int(m[2]), int(m[3])


def supported_range() -> str:
    lo, hi = SUPPORTED
    return f">= {'.'.join(map(str, lo))}, < {'.'.join(map(str, hi))}"


def check_version(text: str, api: str = "") -> tuple[int, int, int]:
    """Raise ``NodeError`` unless kubo version ``text`` is within ``SUPPORTED``."""
    version = parse_version(text)
    lo, hi = SUPPORTED
    if not lo <= version < hi:
        where = f" at {api}" if api else ""
        raise NodeError(f"IPFS daemon{where} is version {text}; tce-ipfs supports kubo {supported_range()}",
                        hint="start our own node with `tce-ipfs node start`")
    return version


def client(api: str = DEFAULT_API, timeout: float = 30.0, *, verify: bool = True) -> Any:
    """An ``ipfshttpclient.Client`` for the RPC API at multiaddr ``api``.

    With ``verify`` (default) the API is asked for its version first: ``NodeError`` when nothing
    answers or the daemon is not a supported kubo. ``timeout`` applies to connecting and to each read.
    """
    try:
        c = ipfshttpclient.Client(api, timeout=timeout, chunk_size=UPLOAD_CHUNK)
    except ipfshttpclient.exceptions.AddressError:
        raise NodeError(f"{api!r} is not an API multiaddr",
                        hint="use the form /ip4/127.0.0.1/tcp/5001 (optionally ending in /http)") from None
    # The API is local: never let requests take proxies or .netrc credentials from the environment
    # (belt and braces: 0.7.0's patched transport already dials the API directly; tested).
    # ipfshttpclient copies these attributes onto every requests session it makes.
    c.tce_api = api  # for duplex.post (uploads that must read the answer while they send)
    props = getattr(c._client, "_session_props", None)
    if isinstance(props, dict):
        props["trust_env"] = False
    if verify:
        try:
            info = c.version()
        except CommunicationError as exc:
            raise NodeError(f"no IPFS API at {api} ({_reason(exc)})",
                            hint="start one with `tce-ipfs node start`") from None
        check_version(str(info.get("Version", "")), api)
    return c


def _reason(exc: BaseException) -> str:
    """A short reason: requests' connection errors are a paragraph of pool internals."""
    text = str(exc).strip()
    if isinstance(exc, ipfshttpclient.exceptions.ConnectionError):
        for needle, short in (("Connection refused", "connection refused"),
                              ("No such file or directory", "no such socket"),
                              ("Name or service not known", "unknown host")):
            if needle in text:
                return short
    if isinstance(exc, ipfshttpclient.exceptions.TimeoutError):
        return "timed out"
    lines = text.splitlines()
    return lines[-1][:300] if lines else type(exc).__name__


def call(what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one client call; turn ipfshttpclient errors into ``NodeError`` naming ``what``."""
    try:
        return func(*args, **kwargs)
    except ClientError as exc:
        raise NodeError(f"IPFS {what} failed: {_reason(exc)}") from None


# --- the calls we use ----------------------------------------------------------------------------


def add_files(c: Any, paths: Sequence[Path], *, pin: bool = True, progress: bool = False,
              timeout: float | None = None) -> Iterable[dict[str, Any]]:
    """Add ``paths`` (regular files) wrapped in ONE directory, CIDv1 with raw leaves.

    Yields kubo's add events as dicts: per file ``{"Name", "Hash", "Size"}``, the wrapping directory
    last with ``"Name": ""``; with ``progress`` also ``{"Name", "Bytes"}`` events while a file streams.
    The directory's entries are the files' base names.
    """
    opts = {"progress": "true"} if progress else {}
    try:
        events = c.add(*[str(p) for p in paths], wrap_with_directory=True, cid_version=1,
                       raw_leaves=True, pin=pin, stream=True, opts=opts, timeout=timeout)
        for event in events:
            yield dict(event)
    except ClientError as exc:
        raise NodeError(f"IPFS add failed: {_reason(exc)}") from None


def add_bytes(c: Any, data: bytes, *, pin: bool = True) -> str:
    """Add one blob (CIDv1, raw leaves); return its CID."""
    res = call("add", c.add_bytes, data, opts={"cid-version": "1", "raw-leaves": "true",
                                               "pin": "true" if pin else "false"})
    return str(res)


def cat(c: Any, path: str, *, timeout: float | None = None) -> bytes:
    """The bytes of ``/ipfs/<cid>[/name]`` (fetched over bitswap when not local)."""
    return bytes(call(f"cat {path}", c.cat, path, timeout=timeout))


def ls(c: Any, path: str) -> list[dict[str, Any]]:
    """Entries of a UnixFS directory: ``[{"Name", "Hash", "Size", "Type"}]`` (Type 1 dir, 2 file)."""
    res = call(f"ls {path}", c.ls, path)
    objects = res["Objects"] or []
    if len(objects) != 1:
        raise NodeError(f"IPFS ls {path}: expected one object, got {len(objects)}")
    return [dict(link) for link in objects[0]["Links"] or []]


def pin_add(c: Any, cid: str) -> None:
    call(f"pin add {cid}", c.pin.add, cid, recursive=True)


def pin_add_named(c: Any, cid: str, name: str, *, timeout: float | None = None) -> None:
    """Pin ``cid`` recursively under ``name`` (kubo >= 0.26; pinning it again renames the pin).

    Blocks that are not local are fetched from connected peers first: ``timeout`` bounds that.
    """
    call(f"pin add {cid}", c._client.request, "/pin/add", (cid,), opts={"name": name},
         decoder="json", timeout=timeout)


def pin_names(c: Any) -> dict[str, str]:
    """``{cid: name}`` of every recursive pin (``""`` for a pin without a name)."""
    res = call("pin ls", c._client.request, "/pin/ls", opts={"type": "recursive", "names": "true"},
               decoder="json")
    keys = (res[0] if res else {}).get("Keys") or {}
    return {str(k): str(v.get("Name") or "") for k, v in keys.items()}


def pin_ls(c: Any, cid: str | None = None) -> dict[str, str]:
    """``{cid: type}`` of pins (all recursive pins, or just ``cid``: empty dict when not pinned)."""
    try:
        res = c.pin.ls(cid, type="recursive") if cid else c.pin.ls(type="recursive")
    except ipfshttpclient.exceptions.ErrorResponse as exc:
        if "not pinned" in str(exc):
            return {}
        raise NodeError(f"IPFS pin ls failed: {_reason(exc)}") from None
    except ClientError as exc:
        raise NodeError(f"IPFS pin ls failed: {_reason(exc)}") from None
    try:
        keys = res["Keys"] or {}
    except KeyError:  # no pin at all: kubo's answer has no Keys
        keys = {}
    return {str(k): str(v["Type"]) for k, v in keys.items()}


def pin_rm(c: Any, cid: str) -> None:
    call(f"pin rm {cid}", c.pin.rm, cid)


def peer_id(c: Any) -> str:
    return str(call("id", c.id)["ID"])


def identity(c: Any) -> dict[str, Any]:
    """``{"ID", "Addresses", "AgentVersion", "Protocols", ...}`` of the node."""
    return dict(call("id", c.id))


def version(c: Any) -> str:
    return str(call("version", c.version)["Version"])


def swarm_connect(c: Any, addr: str, *, timeout: float | None = None) -> None:
    """Dial a peer by full multiaddr (``.../p2p/<id>``).

    Not ``c.swarm.connect``: ipfshttpclient 0.7.0 sends each character of the address as an extra
    argument (``*(str(a) for a in address)``), which kubo rejects ("failed to parse multiaddr").
    """
    call(f"swarm connect {addr}", c._client.request, "/swarm/connect", (addr,), decoder="json",
         timeout=timeout)


def peering_add(c: Any, addr: str) -> None:
    """Keep a peer connected (``swarm peering add``: kubo reconnects it with backoff) until restart."""
    call(f"swarm peering add {addr}", c._client.request, "/swarm/peering/add", (addr,), decoder="json")


def swarm_peers(c: Any) -> list[dict[str, Any]]:
    """Connected peers: ``[{"Addr", "Peer", ...}]``."""
    res = call("swarm peers", c.swarm.peers)
    return [dict(p) for p in res["Peers"] or []]


def stats_bw(c: Any) -> dict[str, Any]:
    """``{"TotalIn", "TotalOut", "RateIn", "RateOut"}`` (ipfshttpclient has no binding for this)."""
    return dict(call("stats bw", c._client.request, "/stats/bw", decoder="json")[0])


def bitswap_stat(c: Any) -> dict[str, Any]:
    """``{"BlocksReceived", "DataReceived", "BlocksSent", "DataSent", "Peers", "Wantlist", ...}``."""
    return dict(call("bitswap stat", c.bitswap.stat))


def bitswap_ledger(c: Any, peer: str) -> dict[str, Any]:
    """Bytes exchanged with one peer: ``{"Peer", "Sent", "Recv", "Exchanged", "Value"}``."""
    return dict(call(f"bitswap ledger {peer}", c._client.request, "/bitswap/ledger", (peer,),
                     decoder="json")[0])


def repo_stat(c: Any) -> dict[str, Any]:
    """``{"RepoSize", "StorageMax", "NumObjects", "RepoPath", "Version"}``."""
    return dict(call("repo stat", c.repo.stat))


def files_stat(c: Any, path: str) -> dict[str, Any]:
    """``{"Hash", "Size", "CumulativeSize", "Type", ...}`` of any ``/ipfs/...`` path."""
    return dict(call(f"files stat {path}", c.files.stat, path))


# --- MFS, pins, names, CAR files (mirror publishing; the tree upload is ipfs.treeupload) -----------


def dir_cids(c: Any, path: str) -> dict[str, str]:
    """``{name: CID}`` of the entries of the UnixFS directory at ``path`` (``/ipfs/...``; a sharded
    directory is read whole), without looking into the entries (nothing is fetched but the directory)."""
    res = call(f"ls {path}", c._client.request, "/ls", (path,),
               opts={"resolve-type": "false", "size": "false"}, decoder="json")
    out: dict[str, str] = {}
    for chunk in res:
        for obj in chunk.get("Objects") or []:
            for link in obj.get("Links") or []:
                out[str(link["Name"])] = str(link["Hash"])
    return out


# kubo >= 0.36: ``files cp --force`` replaces a file in place (an unlink that, unlike ``files rm``, need
# not flush: ``files rm`` always writes the directories out up to the MFS root).
CP_FORCE = (0, 36, 0)


def files_cp(c: Any, source: str, dest: str, *, force: bool = False, flush: bool = True,
             via: duplex.Session | None = None) -> None:
    """MFS: link ``source`` (``/ipfs/<cid>`` or an MFS path) at ``dest``, which must not exist unless
    ``force`` (then a file there is replaced; kubo >= ``CP_FORCE``). ``flush=False``: the directories
    above ``dest`` are written out later, by a ``files_flush`` (kubo allows a limited number of
    unflushed operations: ``Internal.MFSNoFlushLimit``, 256 by default). ``via``: a kept-alive
    connection for many calls in a row."""
    opts = {"force": "true"} if force else {}
    if not flush:
        opts["flush"] = "false"
    if via is not None:
        via.call("files/cp", (source, dest), opts)
        return
    call(f"files cp {source} {dest}", c._client.request, "/files/cp", (source, dest), opts=opts,
         decoder="json")


def files_rm(c: Any, paths: Sequence[str], *, recursive: bool = False, force: bool = False) -> None:
    """MFS: remove ``paths`` (one request; kubo flushes after each path). ``force``: directories too,
    and a path that does not exist is no error."""
    opts = {"recursive": "true" if recursive else "false"}
    if force:
        opts["force"] = "true"
    if paths:
        call(f"files rm {paths[0]}{' ...' if len(paths) > 1 else ''}", c._client.request, "/files/rm",
             tuple(paths), opts=opts, decoder="json")


def files_mkdir(c: Any, path: str) -> None:
    """MFS: ``mkdir -p`` with CIDv1 directories (like the ones ``add_tree`` makes)."""
    call(f"files mkdir {path}", c._client.request, "/files/mkdir", (path,),
         opts={"parents": "true", "cid-version": "1"}, decoder="json")


def files_flush(c: Any, path: str, *, via: duplex.Session | None = None) -> str:
    """MFS: write ``path`` out; returns its CID."""
    res = (via.call("files/flush", (path,)) if via is not None else
           call(f"files flush {path}", c._client.request, "/files/flush", (path,), decoder="json"))
    return str((res[0] if res else {}).get("Cid", ""))


def files_exists(c: Any, path: str) -> bool:
    try:
        c._client.request("/files/stat", (path,), opts={"hash": "true"}, decoder="json")
    except ipfshttpclient.exceptions.ErrorResponse as exc:
        if "does not exist" in str(exc):
            return False
        raise NodeError(f"IPFS files stat {path} failed: {_reason(exc)}") from None
    except ClientError as exc:
        raise NodeError(f"IPFS files stat {path} failed: {_reason(exc)}") from None
    return True


def pin_update(c: Any, old: str, new: str, *, unpin: bool = False, timeout: float | None = None) -> None:
    """Pin ``new`` recursively by walking only what differs from the pinned ``old`` (fast for a
    small change); ``unpin`` also removes the pin on ``old``."""
    call(f"pin update {old} {new}", c._client.request, "/pin/update", (old, new),
         opts={"unpin": "true" if unpin else "false"}, decoder="json", timeout=timeout)


def config_value(c: Any, key: str) -> Any:
    """One key of the running node's config (``ipfs config KEY``); None when it is not set."""
    try:
        res = c._client.request("/config", (key,), decoder="json")
    except ipfshttpclient.exceptions.ErrorResponse:
        return None
    except ClientError as exc:
        raise NodeError(f"IPFS config {key} failed: {_reason(exc)}") from None
    return (res[0] if res else {}).get("Value")


def key_list(c: Any) -> dict[str, str]:
    """``{key name: IPNS name (k51..., base36)}`` of the node's keystore, ``self`` included."""
    res = call("key ls", c._client.request, "/key/ls", opts={"l": "true", "ipns-base": "base36"},
               decoder="json")
    keys = (res[0] if res else {}).get("Keys") or []
    return {str(k["Name"]): str(k["Id"]) for k in keys}


def key_gen(c: Any, name: str) -> str:
    """Make an ed25519 key ``name`` in the node's keystore; returns its IPNS name (k51...)."""
    res = call(f"key gen {name}", c._client.request, "/key/gen", (name,),
               opts={"type": "ed25519", "ipns-base": "base36"}, decoder="json")
    return str(res[0]["Id"])


def name_publish(c: Any, key: str, path: str, *, lifetime: str, ttl: str | None = None,
                 timeout: float | None = None) -> dict[str, str]:
    """Sign and publish an IPNS record ``key`` -> ``path``; ``{"Name", "Value"}``."""
    opts = {"key": key, "lifetime": lifetime, "ipns-base": "base36", "resolve": "false",
            "allow-offline": "true"}
    if ttl:
        opts["ttl"] = ttl
    res = call(f"name publish --key={key} {path}", c._client.request, "/name/publish", (path,),
               opts=opts, decoder="json", timeout=timeout)
    return {k: str(v) for k, v in res[0].items()}


def name_resolve(c: Any, name: str, *, timeout: float | None = None) -> str:
    """``/ipfs/<cid>[/path]`` an IPNS name points to (no cache: the current record)."""
    res = call(f"name resolve {name}", c._client.request, "/name/resolve", (name,),
               opts={"nocache": "true", "recursive": "true"}, decoder="json", timeout=timeout)
    return str(res[0]["Path"])


def resolve(c: Any, path: str, *, timeout: float | None = None) -> str:
    """The CID at the end of ``/ipfs/<cid>/a/b`` or ``/ipns/<name>/...``."""
    res = call(f"resolve {path}", c._client.request, "/resolve", (path,), opts={"recursive": "true"},
               decoder="json", timeout=timeout)
    return str(res[0]["Path"]).removeprefix("/ipfs/")


def dag_stat(c: Any, cid: str, *, offline: bool = True, timeout: float | None = None) -> dict[str, Any]:
    """``{"TotalSize", "NumBlocks"}`` of a DAG; with ``offline`` a missing block is an error (nothing is
    fetched), which makes this the completeness check of a root."""
    res = call(f"dag stat {cid}", c._client.request, "/dag/stat", (cid,),
               opts={"progress": "false"}, offline=offline, decoder="json", timeout=timeout)
    last = res[-1] if res else {}
    dags = last.get("DagStats") or [{}]
    return {"TotalSize": int(last.get("TotalSize", dags[0].get("Size", 0)) or 0),
            "NumBlocks": int(dags[0].get("NumBlocks", 0) or 0)}


def dag_export(c: Any, cid: str, *, timeout: float | None = None) -> Iterable[bytes]:
    """The CAR (v1) of ``cid``'s whole DAG, streamed; only local blocks (offline: a missing block is an
    error, never a network fetch)."""
    try:
        yield from c._client.request("/dag/export", (cid,), opts={"progress": "false"}, offline=True,
                                     decoder="none", stream=True, timeout=timeout)
    except ClientError as exc:
        raise NodeError(f"IPFS dag export {cid} failed: {_reason(exc)}") from None


def dag_import(c: Any, car: Path, *, pin_roots: bool = True, timeout: float | None = None) -> dict[str, Any]:
    """Import a CAR file; ``{"roots": {cid: pin error or ""}, "blocks": n, "bytes": n}``."""
    from ipfshttpclient import multipart

    stream = multipart.FilesStream([str(car)], chunk_size=UPLOAD_CHUNK)
    try:
        res = c._client.request("/dag/import", (), opts={"pin-roots": "true" if pin_roots else "false",
                                                         "stats": "true"},
                                decoder="json", data=stream.body(), headers=stream.headers(),
                                timeout=timeout)
    except ClientError as exc:
        raise NodeError(f"IPFS dag import {car} failed: {_reason(exc)}") from None
    out: dict[str, Any] = {"roots": {}, "blocks": 0, "bytes": 0}
    for item in res or []:
        if item.get("Root"):
            root = item["Root"]
            out["roots"][str(root["Cid"]["/"])] = str(root.get("PinErrorMsg") or "")
        if item.get("Stats"):
            out["blocks"] = int(item["Stats"].get("BlockCount", 0))
            out["bytes"] = int(item["Stats"].get("BlockBytesCount", 0))
    return out
