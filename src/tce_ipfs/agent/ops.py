"""What the agent does: ``install``, ``status``, ``seed``, ``unseed`` (library side; the CLI is thin).

``install(NAME)`` is ``tce-load -wi NAME`` with the repository being the IPFS directory the machine
booted from (``/ipfs/<CID>/NAME.tcz`` ...) instead of a mirror:

1. the dependency closure comes from the repo's ``.dep`` files (``tcrepo.closure``, ``-KERNEL`` for
   this kernel; deps first);
2. for each member not yet in ``<tcedir>/optional`` with a matching md5: ``NAME.tcz.md5.txt`` (required),
   ``NAME.tcz`` (streamed to ``.part``, md5 checked, then renamed) and ``NAME.tcz.dep``;
3. the members not loaded yet go to TC's loader, ``tce-load -i`` (as the tc user), deps first;
4. ``--onboot`` appends NAME to the onboot list (like ``tce-load -wi``), once.

The fetched files are pinned, so this machine serves them to the next one.

``seed`` adds the tce dir's ``optional/*.tcz`` and the boot hook's ``/tmp/builtin/optional/*.tcz`` (with
their ``.md5.txt``/``.dep``) to kubo with the parameters the publisher uses (CIDv1, raw leaves, default
chunker) -- so they get the repo's CIDs -- and pins them; ``unseed`` computes the same CIDs
(``--only-hash``) and unpins them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tce_ipfs import tcrepo
from tce_ipfs.agent.machine import Machine
from tce_ipfs.errors import NodeError, RepoError, TceIpfsError
from tce_ipfs.ipfs import opennet, rpc

log = logging.getLogger(__name__)

BUILTIN_OPTIONAL = "/tmp/builtin/optional"  # the boot hook's extensions (tce-setup loads them from here)
FETCH_TIMEOUT = 120.0  # per read: a block nobody in the swarm has must not hang the command forever


def connect(machine: Machine, api: str | None = None, timeout: float = FETCH_TIMEOUT) -> Any:
    """A client for the machine's kubo (``--api``, else ``Machine.api()``: env, hook status, repo)."""
    addr = api or machine.api()
    try:
        return rpc.client(addr, timeout=timeout)
    except NodeError as exc:
        raise NodeError(exc.message, hint="is kubo running? The boot hook leaves it running unless "
                        "ipfs.seed=0; point elsewhere with --api MULTIADDR") from None


# --------------------------------------------------------------------------------------- install


@dataclass
class InstallResult:
    name: str
    cid: str
    closure: list[str]
    fetched: dict[str, int] = field(default_factory=dict)  # name -> bytes downloaded
    reused: list[str] = field(default_factory=list)  # already in optional/ with a good md5
    loaded: list[str] = field(default_factory=list)  # handed to tce-load -i
    already_loaded: list[str] = field(default_factory=list)
    onboot: bool = False
    loader_output: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "cid": self.cid, "closure": self.closure, "fetched": self.fetched,
            "reused": self.reused, "loaded": self.loaded, "already_loaded": self.already_loaded,
            "onboot": self.onboot,
        }


class Repo:
    """The repository as seen through the local kubo: a flat UnixFS directory ``/ipfs/<CID>[/path]``."""

    def __init__(self, client: Any, root: str) -> None:
        self.client = client
        self.root = root  # CID[/path]
        self.cid = root.split("/", 1)[0]
        self._entries: dict[str, dict[str, Any]] | None = None

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        """Directory entries by name (``{"Hash", "Size", "Type"}``); one ``ls`` of the directory."""
        if self._entries is None:
            links = rpc.ls(self.client, f"/ipfs/{self.root}")
            self._entries = {str(link["Name"]): link for link in links}
        return self._entries

    def has(self, name: str) -> bool:
        return name in self.entries

    def cid_of(self, name: str) -> str | None:
        entry = self.entries.get(name)
        return str(entry["Hash"]) if entry else None

    def text(self, name: str) -> str:
        return rpc.cat(self.client, f"/ipfs/{self.root}/{name}").decode("utf-8", errors="replace")

    def stream(self, name: str) -> Iterator[bytes]:
        """The bytes of ``name`` in chunks (never the whole .tcz in memory)."""
        path = f"/ipfs/{self.root}/{name}"
        try:
            for chunk in self.client.cat(path, stream=True):
                yield bytes(chunk)
        except rpc.ClientError as exc:
            raise NodeError(f"IPFS cat {path} failed: {exc}") from None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _fetch_verified(repo: Repo, name: str, dest: Path, md5: str) -> int:
    """Stream ``name`` into ``dest`` through ``dest.part``; keep it only if its md5 is ``md5``."""
    part = dest.with_name(dest.name + ".part")
    h = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with open(part, "wb") as out:
            for chunk in repo.stream(name):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if h.hexdigest() != md5:
            raise RepoError(f"md5 mismatch for {name}: got {h.hexdigest()}, {name}.md5.txt says {md5}",
                            hint="the repository is corrupt; nothing was installed")
        os.replace(part, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    return size


def _md5_of(text: str, name: str) -> str:
    try:
        digest, listed = tcrepo.parse_md5_txt(text)
    except ValueError:
        raise RepoError(f"{name}.md5.txt in the repository is not md5sum output") from None
    if listed and listed != name:
        raise RepoError(f"{name}.md5.txt names {listed!r}, not {name!r}")
    return digest


def install(name: str, *, machine: Machine | None = None, client: Any = None, cid: str | None = None,
            onboot: bool = False, api: str | None = None,
            progress: Callable[[str], None] | None = None) -> InstallResult:
    """Fetch ``name`` and its dependency closure from the booted repo, check, load (see module doc)."""
    machine = machine or Machine()
    say = progress or (lambda _msg: None)
    repo_root = machine.repo_root(cid)
    top = tcrepo.check_name(tcrepo.normalize(name, machine.kernel))
    client = client if client is not None else connect(machine, api)
    repo = Repo(client, repo_root)
    if not repo.has(top):
        raise RepoError(f"{top} is not in the repository {repo_root}",
                        hint=f"list it with `ipfs ls /ipfs/{repo_root}`")

    dep_texts: dict[str, str] = {}

    def dep_reader(ext: str) -> str | None:
        if not repo.has(ext + ".dep"):
            return None
        dep_texts[ext] = repo.text(ext + ".dep")
        return dep_texts[ext]

    def on_cycle(cycle: list[str]) -> None:
        log.warning("tce-ipfs: dependency loop: %s", " -> ".join(cycle))

    order = tcrepo.closure([top], dep_reader, machine.kernel, on_cycle=on_cycle)
    missing = [ext for ext in order if not repo.has(ext)]
    if missing:
        raise RepoError(f"{top} needs extensions the repository {repo_root} does not have",
                        problems=missing)
    result = InstallResult(name=top, cid=repo_root, closure=order)

    optional = machine.optional()
    optional.mkdir(parents=True, exist_ok=True)
    for ext in order:
        if not repo.has(ext + ".md5.txt"):
            raise RepoError(f"{ext}.md5.txt is missing from the repository {repo_root}",
                            hint="every extension must have its md5; nothing was installed")
        md5_text = repo.text(ext + ".md5.txt")
        want = _md5_of(md5_text, ext)
        dest = optional / ext
        if dest.is_file() and tcrepo.md5_file(dest) == want:
            result.reused.append(ext)
        else:
            say(f"fetching {ext}")
            result.fetched[ext] = _fetch_verified(repo, ext, dest, want)
        _write_atomic(optional / (ext + ".md5.txt"), md5_text.encode())
        if ext in dep_texts:
            _write_atomic(optional / (ext + ".dep"), dep_texts[ext].encode())
        # Keep serving it: pin the file's CID (its blocks are all local now).
        file_cid = repo.cid_of(ext)
        if file_cid:
            rpc.pin_add(client, file_cid)

    to_load = [ext for ext in order if not machine.installed(ext)]
    result.already_loaded = [ext for ext in order if ext not in to_load]
    if to_load:
        say("loading " + " ".join(to_load))
        result.loader_output = machine.tce_load(to_load)
        result.loaded = to_load
        not_loaded = [ext for ext in to_load if not machine.installed(ext)]
        if not_loaded:
            raise TceIpfsError(f"tce-load did not load {', '.join(not_loaded)}",
                               hint=result.loader_output.strip()[-400:] or None)
    if onboot:
        lst = machine.onboot_list()
        current = lst.read_text().split() if lst.exists() else []
        if top not in current and top.removesuffix(".tcz") not in current:
            with lst.open("a") as fh:
                fh.write(top + "\n")
        result.onboot = True
    return result


# ---------------------------------------------------------------------------------------- status


def status(*, machine: Machine | None = None, client: Any = None, api: str | None = None,
           ledgers: bool = True) -> dict[str, Any]:
    """Repo CID, peer ID, peers (with bytes exchanged), bitswap totals, pinned extensions."""
    machine = machine or Machine()
    client = client if client is not None else connect(machine, api, timeout=30)
    root = machine.booted_repo()
    bs = rpc.bitswap_stat(client)
    peers = []
    for p in rpc.swarm_peers(client):
        entry: dict[str, Any] = {"peer": str(p.get("Peer", "")), "addr": str(p.get("Addr", ""))}
        if ledgers and entry["peer"]:
            try:
                ledger = rpc.bitswap_ledger(client, entry["peer"])
                entry["sent"] = int(ledger.get("Sent", 0))
                entry["recv"] = int(ledger.get("Recv", 0))
            except NodeError:
                pass
        peers.append(entry)
    pins = rpc.pin_ls(client)
    pinned: list[str] = []
    if root:
        try:
            repo = Repo(client, root)
            pinned = sorted(name for name, e in repo.entries.items()
                            if name.endswith(tcrepo.EXT) and str(e["Hash"]) in pins)
        except NodeError as exc:
            log.warning("tce-ipfs: cannot list the repository %s: %s", root, exc.message)
    return {
        "repo_cid": root,
        "peer_id": rpc.peer_id(client),
        "peers": peers,
        "blocks_sent": int(bs.get("BlocksSent", 0)),
        "blocks_received": int(bs.get("BlocksReceived", 0)),
        "bytes_sent": int(bs.get("DataSent", 0)),
        "bytes_received": int(bs.get("DataReceived", 0)),
        "pinned_extensions": pinned,
        "pins": len(pins),
        "network": opennet.network_status(client),
        "hook": machine.status(),
    }


def render_status(info: dict[str, Any]) -> str:
    lines = [
        f"repo:      {info['repo_cid'] or '(not booted with tce=ipfs:)'}",
        f"peer id:   {info['peer_id']}",
        f"served:    {info['bytes_sent']} bytes in {info['blocks_sent']} blocks",
        f"received:  {info['bytes_received']} bytes in {info['blocks_received']} blocks",
        f"peers:     {len(info['peers'])}",
    ]
    for p in info["peers"]:
        extra = f"  sent {p['sent']} B, recv {p['recv']} B" if "sent" in p else ""
        lines.append(f"  {p['addr']}/p2p/{p['peer']}{extra}")
    pinned = info["pinned_extensions"]
    lines.append(f"pinned:    {len(pinned)} extension(s)" + (": " + " ".join(pinned) if pinned else ""))
    lines += opennet.render_network(info.get("network"))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ seed/unseed


def seed_dirs(machine: Machine) -> list[Path]:
    """Where this machine keeps extensions: the tce dir's ``optional/``, and ``/tmp/builtin/optional``
    (where the boot hook placed what it fetched at boot)."""
    dirs: list[Path] = []
    for d in (machine.optional(), machine.path(BUILTIN_OPTIONAL)):
        if d.is_dir() and d.resolve() not in {x.resolve() for x in dirs}:
            dirs.append(d)
    return dirs


def seed_files(machine: Machine, names: Iterable[str] = ()) -> list[Path]:
    """``NAME.tcz`` (all, or the ones named) from ``seed_dirs`` and their ``.md5.txt``/``.dep``.

    A name in both directories is taken from the first (the tce dir).
    """
    dirs = seed_dirs(machine)
    found: dict[str, Path] = {}
    for d in dirs:
        for p in sorted(d.glob("*" + tcrepo.EXT)):
            if p.is_file() and tcrepo.is_valid_name(p.name):
                found.setdefault(p.name, p)
    wanted = [tcrepo.check_name(tcrepo.normalize(n, machine.kernel)) for n in names]
    if wanted:
        missing = [n for n in wanted if n not in found]
        if missing:
            raise RepoError(f"not in {' or '.join(str(d) for d in dirs) or machine.optional()}",
                            problems=missing)
        exts = [found[n] for n in dict.fromkeys(wanted)]
    else:
        exts = [found[n] for n in sorted(found)]
    files: list[Path] = []
    for ext in exts:
        files.append(ext)
        for suffix in (".md5.txt", ".dep"):
            side = ext.with_name(ext.name + suffix)
            if side.is_file():
                files.append(side)
    return files


def _add_one(client: Any, path: Path, *, only_hash: bool) -> str:
    """The CID of ``path`` as the publisher makes it (CIDv1, raw leaves); added+pinned unless hashing."""
    res = rpc.call(f"add {path.name}", client.add, str(path), cid_version=1, raw_leaves=True,
                       pin=not only_hash, only_hash=only_hash)
    if isinstance(res, list):  # one event per file; a single file gives one
        res = res[-1]
    return str(res["Hash"])


def seed(names: Iterable[str] = (), *, machine: Machine | None = None, client: Any = None,
         api: str | None = None) -> list[dict[str, Any]]:
    """Add + pin the tce dir's extensions; report each file's CID and whether the repo has that CID."""
    machine = machine or Machine()
    client = client if client is not None else connect(machine, api)
    repo = _booted_repo(machine, client)
    out = []
    for path in seed_files(machine, names):
        cid = _add_one(client, path, only_hash=False)
        out.append({"name": path.name, "path": str(path), "cid": cid, "size": path.stat().st_size,
                    "in_repo": (repo.cid_of(path.name) == cid) if repo else None})
    return out


def unseed(names: Iterable[str] = (), *, machine: Machine | None = None, client: Any = None,
           api: str | None = None, gc: bool = False) -> list[dict[str, Any]]:
    """Unpin the tce dir's extensions (same CIDs as ``seed``); ``gc`` also frees their blocks now."""
    machine = machine or Machine()
    client = client if client is not None else connect(machine, api)
    pins = rpc.pin_ls(client)
    out = []
    for path in seed_files(machine, names):
        cid = _add_one(client, path, only_hash=True)
        was = cid in pins
        if was:
            rpc.pin_rm(client, cid)
        out.append({"name": path.name, "cid": cid, "unpinned": was})
    if gc:
        rpc.call("repo gc", client.repo.gc, quiet=True)
    return out


def _booted_repo(machine: Machine, client: Any) -> Repo | None:
    root = machine.booted_repo()
    if not root:
        return None
    repo = Repo(client, root)
    try:
        repo.entries  # noqa: B018 -- one ls; failure just means "cannot compare"
    except NodeError as exc:
        log.warning("tce-ipfs: cannot list the repository %s: %s", root, exc.message)
        return None
    return repo
