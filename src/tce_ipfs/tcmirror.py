"""Follow a Tiny Core HTTP mirror: keep a local copy of it (or of some releases/arches) in sync.

``pull(url, dest)`` (``tce-ipfs mirror pull``) works from the mirror's own index, per ``tcz/``
directory: ``md5.db.gz`` names every extension and its md5, ``sizelist.gz`` its size. An extension is
fetched only when the local copy is missing or differs (a local state file remembers each file's md5
against its ``stat``, so unchanged files are neither hashed nor fetched again); every ``.tcz`` is
checked against ``md5.db.gz`` (and its ``.md5.txt``) before it replaces the old one, together with its
sidecars (``.md5.txt .dep .info .list .tree .zsync``, those the mirror has). Extensions gone from the
index are removed (only files a pull put there: a lab's own lists next to them stay). The index files
are written last, so the copy never claims what it does not hold.

Resuming: a download goes to ``DEST/.tce-ipfs/partial/`` first; a run that is killed leaves it there
and the next run asks for the rest (``Range``); a file that does not verify after a resume is fetched
again whole. The local layout is TC's (``DEST/16.x/x86_64/tcz/``), what ``tce-ipfs publish`` takes.

``url``: a ``tcz/`` directory (``http://host/16.x/x86_64/tcz/``: that one), or the mirror's top
(``http://host/``: the releases/arches asked for, else those its directory listings show).
Standard library only (urllib); a loopback mirror is reached without any proxy.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import ipaddress
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tce_ipfs import tcindex, tcrepo
from tce_ipfs.errors import RepoError, UsageError
from tce_ipfs.log import Progress, human

log = logging.getLogger(__name__)

STATE_DIR = ".tce-ipfs"  # inside DEST; tctree skips dot directories
STATE_FILE = "pull.json"
FORMAT = 1
INDEXES = ("md5.db.gz", "sizelist.gz", "sizelist", "dep.db.gz", "tags.db.gz", "provides.db", "provides.db.gz",
           "provides.db.zsync", "info.lst")
REQUIRED_INDEX = "md5.db.gz"
CHUNK = 256 * 1024
SAVE_EVERY = 2.0  # seconds between state saves while pulling
_RELEASE_RE = re.compile(r"^\d+\.x$")
_PART_RE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9._+-]*$")


class NotFound(Exception):
    """HTTP 404 (a sidecar or index file the mirror does not have)."""


@dataclass(frozen=True)
class Target:
    url: str  # of the tcz/ directory, ending in "/"
    prefix: str  # where it goes under DEST: "16.x/x86_64/tcz"


@dataclass
class DirResult:
    prefix: str
    url: str
    extensions: int = 0
    fetched: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    resumed: list[str] = field(default_factory=list)
    bytes: int = 0
    requests: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"dir": self.prefix, "url": self.url, "extensions": self.extensions, "fetched": self.fetched,
                "removed": self.removed, "failed": self.failed, "resumed": self.resumed,
                "bytes": self.bytes, "requests": self.requests}


# --- HTTP ------------------------------------------------------------------------------------------
class Http:
    """GETs with a timeout, retries on connection errors, ``Range`` resumption; counts what it does."""

    def __init__(self, base: str, *, timeout: float = 60.0, retries: int = 2) -> None:
        host = urllib.parse.urlsplit(base).hostname or ""
        handlers: list[Any] = []
        try:
            if ipaddress.ip_address(host).is_loopback:
                handlers.append(urllib.request.ProxyHandler({}))  # a local mirror: never via a proxy
        except ValueError:
            if host == "localhost":
                handlers.append(urllib.request.ProxyHandler({}))
        self.opener = urllib.request.build_opener(*handlers)
        self.timeout = timeout
        self.retries = retries
        self.requests = 0
        self.lock = threading.Lock()

    def _open(self, url: str, headers: dict[str, str] | None = None) -> Any:
        req = urllib.request.Request(url, headers={"User-Agent": "tce-ipfs-mirror-pull", **(headers or {})})
        for attempt in range(self.retries + 1):
            with self.lock:
                self.requests += 1
            try:
                return self.opener.open(req, timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise NotFound(url) from None
                if exc.code == 416:
                    return exc  # range not satisfiable: the caller decides
                if exc.code < 500 or attempt == self.retries:
                    raise RepoError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self.retries:
                    reason = getattr(exc, "reason", exc)
                    raise RepoError(f"{url}: {reason}",
                                    hint="is the mirror URL right and reachable?") from None
            time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def get(self, url: str) -> bytes:
        with self._open(url) as resp:
            return bytes(resp.read())

    def exists(self, url: str) -> bool:
        try:
            self.get(url)
        except NotFound:
            return False
        return True

    def download(self, url: str, part: Path, on_bytes: Callable[[int], None]) -> bool:
        """Fetch ``url`` into ``part``, continuing what is there; True when it continued a partial file."""
        have = part.stat().st_size if part.exists() else 0
        resp = self._open(url, {"Range": f"bytes={have}-"} if have else None)
        with contextlib.closing(resp):
            status = getattr(resp, "status", None) or resp.getcode()
            if status == 416:  # asked past the end: the partial file is already whole (or too long)
                return have > 0
            resumed = status == 206 and have > 0
            with open(part, "ab" if resumed else "wb") as out:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    on_bytes(len(chunk))
        return resumed


def _listing_dirs(html: str) -> list[str]:
    """Sub-directory names in an HTTP directory listing (``<a href="name/">``)."""
    names = []
    for href in re.findall(r'href="([^"?#]+)/"', html):
        name = urllib.parse.unquote(href.rstrip("/").rsplit("/", 1)[-1])
        if _PART_RE.match(name) and name not in names:
            names.append(name)
    return names


def targets(url: str, http: Http, releases: Sequence[str] = (), arches: Sequence[str] = ()) -> list[Target]:
    """The ``tcz/`` directories to follow (see the module doc)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{url!r} is not an http:// or https:// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UsageError(f"{url!r}: no credentials, query or fragment in the mirror URL")
    path = [p for p in parts.path.split("/") if p]
    if any(p in (".", "..") or not _PART_RE.match(p) for p in path):
        raise UsageError(f"{url!r}: unsafe path in the mirror URL")
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + "/".join(path), "", ""))
    base = base.rstrip("/") + "/"
    if path and path[-1] == "tcz":
        if releases or arches:
            raise UsageError("--release/--arch go with the mirror's top URL, not a tcz/ URL")
        return [Target(base, "/".join(path[-3:]))]
    top = base
    if not releases:
        releases = [d for d in _listing_dirs(http.get(top).decode(errors="replace")) if _RELEASE_RE.match(d)]
        if not releases:
            raise UsageError(f"{top}: no <N>.x release directories in its listing",
                             hint="name them: --release 16.x --arch x86_64 (or give the tcz/ URL)")
    found = []
    for release in releases:
        if not _PART_RE.match(release):
            raise UsageError(f"--release {release!r} is not a directory name")
        arch_list = list(arches) or _listing_dirs(http.get(f"{top}{release}/").decode(errors="replace"))
        for arch in arch_list:
            if not _PART_RE.match(arch):
                raise UsageError(f"--arch {arch!r} is not a directory name")
            target = Target(f"{top}{release}/{arch}/tcz/", f"{release}/{arch}/tcz")
            if arches or http.exists(target.url + REQUIRED_INDEX):
                found.append(target)
    if not found:
        raise UsageError(f"{top}: no <release>/<arch>/tcz/ with an md5.db.gz found")
    return found


# --- local state -----------------------------------------------------------------------------------
class State:
    """``DEST/.tce-ipfs/pull.json``: per pulled file its md5 and the ``stat`` it had when verified."""

    def __init__(self, dest: Path) -> None:
        self.dir = dest / STATE_DIR
        self.path = self.dir / STATE_FILE
        self.lock = threading.Lock()
        self.data: dict[str, Any] = {"format": FORMAT, "dirs": {}}
        with contextlib.suppress(FileNotFoundError, ValueError):
            data = json.loads(self.path.read_text())
            if data.get("format") == FORMAT:
                self.data = data
        self._saved = time.monotonic()

    def files(self, prefix: str) -> dict[str, list[Any]]:
        d: dict[str, Any] = self.data["dirs"].setdefault(prefix, {"files": {}})
        files: dict[str, list[Any]] = d["files"]
        return files

    def record(self, prefix: str, name: str, md5: str, st: os.stat_result) -> None:
        with self.lock:
            self.files(prefix)[name] = [md5, st.st_size, st.st_mtime_ns, st.st_ino]
            if time.monotonic() - self._saved > SAVE_EVERY:
                self._save()

    def forget(self, prefix: str, name: str) -> None:
        with self.lock:
            self.files(prefix).pop(name, None)

    def save(self, **extra: Any) -> None:
        with self.lock:
            self.data.update(extra)
            self._save()

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.data, sort_keys=True) + "\n")
        os.replace(tmp, self.path)
        self._saved = time.monotonic()

    def verified_md5(self, prefix: str, name: str, path: Path) -> str | None:
        """The md5 recorded for ``path`` if the file has not changed since (else None)."""
        rec = self.files(prefix).get(name)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if rec and rec[1:] == [st.st_size, st.st_mtime_ns, st.st_ino]:
            return str(rec[0])
        return None


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    (dest / STATE_DIR).mkdir(parents=True, exist_ok=True)
    with open(dest / STATE_DIR / "pull.lock", "ab") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UsageError(f"another `mirror pull` is writing to {dest}") from None
        yield


# --- pulling ---------------------------------------------------------------------------------------
def _safe_names(md5db: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The index's entries with acceptable names, and the others (a path trick is never fetched)."""
    good = {name: digest for name, digest in md5db.items() if tcrepo.is_valid_name(name)}
    return good, sorted(set(md5db) - set(good))


def _md5(path: Path) -> str:
    return tcrepo.md5_file(path)


class _Puller:
    def __init__(self, dest: Path, http: Http, state: State, bar: Progress, progress: bool) -> None:
        self.dest, self.http, self.state, self.bar, self.progress = dest, http, state, bar, progress
        self.bytes = 0
        self.lock = threading.Lock()

    def count(self, n: int, *, show: bool = True) -> None:
        """``n`` more bytes fetched (``show``: part of an extension, which the progress bar counts)."""
        with self.lock:
            self.bytes += n
            if show and self.progress and self.bar.enabled:
                self.bar.advance(n)

    def fetch_extension(self, target: Target, name: str, md5: str) -> tuple[bool, str | None]:
        """Download, verify and place one extension with its sidecars; (resumed, error or None)."""
        tcz = self.dest / target.prefix
        partial = self.dest / STATE_DIR / "partial" / target.prefix
        partial.mkdir(parents=True, exist_ok=True)
        part = partial / name
        resumed = self.http.download(target.url + name, part, self.count)
        got = _md5(part)
        if got != md5 and resumed:  # the rest of another version, or a bad resume: once more, whole
            part.unlink()
            self.http.download(target.url + name, part, self.count)
            got = _md5(part)
        if got != md5:
            part.unlink(missing_ok=True)
            return resumed, f"md5 {got} does not match md5.db.gz ({md5})"
        sidecars: dict[str, bytes | None] = {}
        for suffix in tcrepo.SIDECARS:
            try:
                data = self.http.get(target.url + name + suffix)
            except NotFound:
                data = None
            sidecars[suffix] = data
            if data is not None:
                self.count(len(data), show=False)
        md5_txt = sidecars.get(".md5.txt")
        if md5_txt is None:
            return resumed, "the mirror has no .md5.txt for it"
        try:
            listed, listed_name = tcrepo.parse_md5_txt(md5_txt.decode(errors="replace"))
        except ValueError:
            return resumed, ".md5.txt is not md5sum output"
        if listed != md5 or listed_name != name:
            return resumed, f"its .md5.txt ({listed}  {listed_name}) disagrees with md5.db.gz ({md5})"
        for suffix, data in sidecars.items():
            final = tcz / (name + suffix)
            if data is None:
                final.unlink(missing_ok=True)
            else:
                tmp = partial / (name + suffix)
                tmp.write_bytes(data)
                os.replace(tmp, final)
        os.replace(part, tcz / name)  # the extension last: its sidecars are in place when it appears
        self.state.record(target.prefix, name, md5, (tcz / name).stat())
        return resumed, None


def pull(url: str, dest: Path, *, releases: Sequence[str] = (), arches: Sequence[str] = (), jobs: int = 4,
         progress: bool = True, timeout: float = 60.0, delete: bool = True) -> list[DirResult]:
    """Bring ``dest`` in line with the mirror at ``url`` (see the module doc); one result per ``tcz/``."""
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    http = Http(url, timeout=timeout)
    results = []
    with _locked(dest):
        state = State(dest)
        for target in targets(url, http, releases, arches):
            results.append(_pull_dir(target, dest, http, state, jobs=jobs, progress=progress, delete=delete))
        state.save(url=url, pulled_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return results


def _pull_dir(target: Target, dest: Path, http: Http, state: State, *, jobs: int, progress: bool,
              delete: bool) -> DirResult:
    before = http.requests
    result = DirResult(prefix=target.prefix, url=target.url)
    indexes: dict[str, bytes] = {}
    for name in INDEXES:
        try:
            indexes[name] = http.get(target.url + name)
        except NotFound:
            if name == REQUIRED_INDEX:
                raise RepoError(f"{target.url}{name}: not found (404)",
                                hint="is this a Tiny Core tcz/ directory URL?") from None
    md5db, unsafe = _safe_names(tcindex.parse_md5_db(gzip_text(indexes[REQUIRED_INDEX])))
    if not md5db:
        raise RepoError(f"{target.url}{REQUIRED_INDEX} lists no extensions")
    for name in unsafe:
        result.failed[name] = "unsafe name in md5.db.gz; skipped"
    sizes = tcindex.parse_sizelist(gzip_text(indexes["sizelist.gz"])) if "sizelist.gz" in indexes else \
        tcindex.parse_sizelist(indexes.get("sizelist", b"").decode(errors="replace"))
    result.extensions = len(md5db)
    tcz = dest / target.prefix
    tcz.mkdir(parents=True, exist_ok=True)

    todo: list[str] = []
    for name, md5 in sorted(md5db.items()):
        path = tcz / name
        have = state.verified_md5(target.prefix, name, path)
        if have is None and path.exists():  # copied in, or pulled by a run killed before it saved
            have = _md5(path)
            if have == md5:
                state.record(target.prefix, name, md5, path.stat())
        if have != md5:
            todo.append(name)

    total = sum(sizes.get(n, 0) for n in todo)
    with Progress(f"{target.prefix}: fetching {len(todo)} of {len(md5db)} extensions", total) as bar:
        puller = _Puller(dest, http, state, bar, progress)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for name, (resumed, error) in zip(todo, pool.map(
                    lambda n: puller.fetch_extension(target, n, md5db[n]), todo), strict=True):
                if error:
                    result.failed[name] = error
                    log.error("%s/%s: %s (the local copy is left as it was)", target.prefix, name, error)
                else:
                    result.fetched.append(name)
                if resumed:
                    result.resumed.append(name)
    if delete:
        for name in sorted(set(state.files(target.prefix)) - set(md5db)):
            for f in [tcz / name, *(tcz / (name + s) for s in tcrepo.SIDECARS)]:
                f.unlink(missing_ok=True)
            state.forget(target.prefix, name)
            result.removed.append(name)
    for name, data in indexes.items():  # last: the copy never lists what it does not hold
        tmp = dest / STATE_DIR / "partial" / target.prefix / name
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, tcz / name)
    for name in INDEXES:
        if name not in indexes:
            (tcz / name).unlink(missing_ok=True)
    result.bytes = puller.bytes
    result.requests = http.requests - before
    log.info("%s: %d extensions, fetched %d (%s%s), removed %d, failed %d", target.prefix, len(md5db),
             len(result.fetched), human(result.bytes),
             f", {len(result.resumed)} resumed" if result.resumed else "", len(result.removed),
             len(result.failed))
    return result


def gzip_text(data: bytes) -> str:
    try:
        return gzip.decompress(data).decode("utf-8", errors="replace")
    except (OSError, EOFError) as exc:
        raise RepoError(f"a gzip'd index of the mirror does not unpack: {exc}") from None
