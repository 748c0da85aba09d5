"""Publish a Tiny Core repository, or a whole mirror tree, to kubo as ONE root CID.

Inputs (``tctree.scan_source``): a flat repo (``DIR/*.tcz`` + sidecars + ``*.lst`` + index files, like
a mirror's ``tcz/``), a tce dir (``DIR/optional/*`` + ``DIR/*.lst``, flattened), or a mirror tree
(``<release>/<arch>/tcz/``, each ``tcz/`` published at its own path with its index files). Published:
``/ipfs/<root>/NAME.tcz``, ``/ipfs/<root>/onboot.lst``, ... for a repo; for a tree
``/ipfs/<root>/16.x/x86_64/tcz/NAME.tcz``, so ``tce=ipfs:<root>/16.x/x86_64/tcz`` boots from it.

CIDv1 with raw leaves and kubo's default chunker and directory sharding: the same files give the same
root on any node. The checks (names, dependencies, lists; for a tree also the index files, as warnings)
run before anything is sent to kubo; the md5 of every ``.tcz`` against its ``.md5.txt`` is computed
from the bytes as they are sent (one read of a 3 GiB mirror, not two): a mismatch refuses the publish
and takes the root's pin back (the blocks sent are unpinned: ``ipfs repo gc`` drops them).

Incremental: with a ``cache`` (``pubcache``) of the previous publish of the same source on the same
node, and that root still pinned there, only the files whose ``stat`` changed are hashed and added:
the changed files are added in one request, the previous root is copied into MFS (a copy of its
links, nothing is read), the removed entries are unlinked, the files whose CID is new linked over the
old ones (``files cp --force``, unflushed), and the directory nodes rebuilt by MFS in one flush at the
end. kubo builds directories the same way for ``add`` and for MFS, so the root is exactly the one a full
publish of the tree gives (``tests/test_mirror_publish.py``). Every check of a full publish runs; only
the sidecars and lists whose ``stat`` changed are read again (the cache keeps the others' texts). The
result carries the diff against the previous root: extensions added, removed and changed.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import posixpath
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tce_ipfs import tcrepo, tctree
from tce_ipfs.errors import NodeError, RepoError
from tce_ipfs.ipfs import duplex, roots, rpc, treeupload
from tce_ipfs.ipfs.pubcache import Entry, PublishCache, stat_key
from tce_ipfs.log import Progress, human

log = logging.getLogger(__name__)

MFS_STAGE = "/tce-ipfs-publish"  # MFS directory where an incremental publish assembles its root
RM_BATCH = 500  # paths per `files rm` request
FLUSH_EVERY = 128  # unflushed MFS links between flushes (kubo refuses more than 256 by default)
LINK_TIMEOUT = 600.0  # seconds for one MFS call (a flush of a big sharded directory on a slow disk)


@dataclass
class PublishResult:
    root_cid: str
    files: dict[str, tuple[str, int]]  # published path -> (CID, size in bytes)
    total_size: int
    layout: str = "flat"
    warnings: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)  # tree: the tcz/ directories ("" for a repo)
    mode: str = "full"  # "full", "incremental" or "unchanged"
    previous: str | None = None  # the root this source had before (with a cache)
    added_files: int = 0  # files sent to kubo
    added_bytes: int = 0
    seconds: float = 0.0
    diff: dict[str, Any] | None = None  # vs ``previous`` (see ``extension_diff``)

    def as_json(self) -> dict[str, Any]:
        return {
            "root": self.root_cid,
            "files": {name: {"cid": cid, "size": size} for name, (cid, size) in self.files.items()},
            "total": self.total_size,
            "layout": self.layout,
            "dirs": self.dirs,
            "warnings": self.warnings,
            "mode": self.mode,
            "previous": self.previous,
            "added_files": self.added_files,
            "added_bytes": self.added_bytes,
            "seconds": round(self.seconds, 3),
            "diff": self.diff,
        }


def publish(repo_dir: Path, client: Any, *, check: bool = True, progress: bool = True,
            kernel: str | None = None, cache: Path | None = None, full: bool = False,
            pin_name: str | None = None, node_id: str | None = None) -> PublishResult:
    """Check (unless ``check=False``), add and pin ``repo_dir``; return the root CID and per-file CIDs.

    Raises ``RepoError`` listing every bad file (corrupt ``.tcz``, missing ``.md5.txt`` or dependency,
    list naming a missing extension, unsafe name). ``kernel`` resolves ``-KERNEL`` dependencies for
    one kernel release (default: any variant present will do). ``cache``: the file that remembers this
    source's last publish on this node (``pubcache``): makes a republish incremental; ``full`` ignores
    what it says (and rewrites it). ``pin_name``: the root's pin name (``roots.pin_name``).

    A repo refused for names, dependencies or lists sends nothing to kubo; one refused for an md5
    leaves no pin (its blocks are unpinned).
    """
    started = time.monotonic()
    with _gc_paused():
        source = tctree.scan_source(Path(repo_dir))
        files = source.published()
        stats = {rel: path.stat() for rel, path in files.items()}
        node = node_id or (rpc.peer_id(client) if cache else "")
        state = PublishCache.load(cache, source.root.resolve(), node)
        known = {} if full else state.unchanged_entries(stats)
        previous = state.root if state.files else None
        incremental = bool(previous and not full and rpc.pin_ls(client, previous))
        if previous and not incremental and not full:
            log.info("the previous root %s is not pinned on this node any more: publishing everything",
                     previous)
        sizes = {rel: st.st_size for rel, st in stats.items()}
        # The md5 of every .tcz sent is computed from the bytes as they go to kubo (one read, beside
        # kubo's work), and checked before the new root is made or kept; the rest is checked first.
        sums = {rel: e.md5 for rel, e in known.items() if e.md5} if check else {}
        warnings = _check_first(source, known, kernel, check, sizes)
        verify = _md5_check(source, files, sums) if check else None
        if incremental:
            assert previous is not None
            root, cids, mode, added = _republish(client, previous, files, known, state, sizes, progress,
                                                 pin_name, verify)
        else:
            root, cids = _add_all(client, source.root, files, sizes, progress, pin_name, verify)
            mode, added = "full", list(files)

        diff = extension_diff({rel: e.cid for rel, e in state.files.items()}, cids) if previous else None
        _remember(state, source, root, {rel: (stats[rel], cids[rel], sums.get(rel)) for rel in files})
        total = sum(sizes.values())
        result = PublishResult(root_cid=root, files={rel: (cids[rel], sizes[rel]) for rel in files},
                               total_size=total, layout=source.layout, warnings=warnings,
                               dirs=sorted(source.repos), mode=mode, previous=previous,
                               added_files=len(added), added_bytes=sum(sizes[r] for r in added),
                               seconds=time.monotonic() - started, diff=diff)
    log.info("published %d files (%s, %d extensions) from %s as %s (%s: %d files, %s added)", len(files),
             human(total), source.extension_count, source.root, root, mode, result.added_files,
             human(result.added_bytes))
    return result


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Python's cycle collector paused: a publish makes ~100,000 small objects that live to its end
    (paths, stat results, cache entries) and no cycles, and the collector walked them all again and
    again: ~13% of a republish of an 18,620-file mirror."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_first(source: tctree.Source, known: dict[str, Entry], kernel: str | None, check: bool,
                 sizes: dict[str, int]) -> list[str]:
    """Everything but the md5 of the ``.tcz`` files (``_md5_check``), before anything goes to kubo:
    raises ``RepoError`` on errors; returns the warnings. The sidecars and lists that did not change
    since the last publish are not read again (``_reuse_texts``)."""
    _reuse_texts(source, known)
    if check:
        problems = tctree.check(source, kernel, md5=False, sizes=sizes)
    else:
        problems = list(source.ignored) + [p for r in source.repos.values() for p in r.ignored]
    _refuse_on_errors(source.root, problems)
    warnings = [str(p) for p in problems if p.severity == "warning"]
    for w in warnings:
        log.warning("%s: %s", source.root, w)
    notes = [p.file for p in problems if p.severity == "note"]
    if notes:
        log.info("%s: left out (not in a tcz/ directory): %s", source.root, ", ".join(notes))
    if not source.extension_count:
        raise RepoError(f"refusing to publish {source.root}: no .tcz files found")
    return warnings


Md5Check = Callable[[dict[Path, str]], None]


def _md5_check(source: tctree.Source, files: dict[str, Path], sums: dict[str, str]) -> Md5Check:
    """``verify(digests)``: the md5 of every ``.tcz`` just sent (``digests``, by file) joins ``sums``
    (published path -> md5, the unchanged ones from the cache), and every ``.tcz`` is checked against
    its ``.md5.txt``: ``RepoError`` on a mismatch."""
    by_file = {path: rel for rel, path in files.items() if rel.endswith(tcrepo.EXT)}

    def verify(digests: dict[Path, str]) -> None:
        sums.update({by_file[path]: digest for path, digest in digests.items() if path in by_file})
        _refuse_on_errors(source.root, tctree.md5_problems(source, sums))

    return verify


def _republish(client: Any, previous: str, files: dict[str, Path], known: dict[str, Entry],
               state: PublishCache, sizes: dict[str, int], progress: bool, pin_name: str | None,
               verify: Md5Check | None) -> tuple[str, dict[str, str], str, list[str]]:
    """The incremental publish from ``previous``: (root, {path: CID}, mode, paths added)."""
    changed = sorted(rel for rel in files if rel not in known)
    removed = sorted(set(state.files) - set(files))
    if changed or removed:
        root, new_cids = _incremental(client, previous, files, changed, removed, state, sizes, progress,
                                      verify)
        mode = "incremental"
    else:
        if verify is not None:
            verify({})  # every md5 known: checked against the .md5.txt files all the same
        root, new_cids, mode = previous, {}, "unchanged"
    cids = {rel: new_cids.get(rel) or state.files[rel].cid for rel in files}
    if root != previous and not rpc.pin_ls(client, root):  # the same tree may be pinned already
        rpc.pin_update(client, previous, root)  # walks only what differs; the pin keeps old's name
        if pin_name:
            rpc.pin_add_named(client, root, pin_name)  # a new root: its own name (and time)
    elif pin_name:
        _name_pin(client, root, pin_name)
    return root, cids, mode, changed


def _remember(state: PublishCache, source: tctree.Source, root: str,
              published: dict[str, tuple[os.stat_result, str, str | None]]) -> None:
    """Save what this publish gave (``published``: path -> (stat, CID, md5)) in the cache, with the
    texts of the sidecars and lists the checks read."""
    if state.root != root or not state.published_at:
        state.published_at = roots.now()
    state.root = root
    texts = _texts_read(source)
    state.files = {rel: Entry(stat_key(st), cid, md5, texts.get(rel))
                   for rel, (st, cid, md5) in published.items()}
    state.save()


def _name_pin(client: Any, cid: str, name: str) -> None:
    """Name ``cid``'s (recursive) pin ``name``, unless it has one of our names already (the root's age)."""
    if roots.parse_pin_name(rpc.pin_names(client).get(cid, "")) is None:
        rpc.pin_add_named(client, cid, name)


def _reuse_texts(source: tctree.Source, known: dict[str, Entry]) -> None:
    """Give the checks the texts of the sidecars and lists that have not changed since the last publish
    (same stat key), as the cache has them: only the changed ones are read."""
    for prefix, repo in source.repos.items():
        for name in (*repo.sidecars, *repo.lists):
            entry = known.get(source.path_of(prefix, name))
            if entry is not None and entry.text is not None:
                repo.texts[name] = entry.text


def _texts_read(source: tctree.Source) -> dict[str, str]:
    """``{published path: text}`` of every sidecar and list the checks read (or were given)."""
    return {source.path_of(prefix, name): text for prefix, repo in source.repos.items()
            for name, text in repo.texts.items()}


def _refuse_on_errors(root: Path, problems: list[tcrepo.Problem]) -> None:
    errors = tcrepo.errors_only(problems)
    if errors:
        raise RepoError(f"refusing to publish {root}: {len(errors)} problem(s)",
                        problems=[str(p) for p in errors],
                        hint="fix or remove the files named (or use --no-check to publish anyway)")


def _add_all(client: Any, where: Path, files: dict[str, Path], sizes: dict[str, int], progress: bool,
             pin_name: str | None, verify: Md5Check | None) -> tuple[str, dict[str, str]]:
    """Add ``files`` as one tree, pinned; return (root CID, {path: CID}). ``verify``: given the md5 of
    every ``.tcz`` as it was sent; when it refuses, the root's pin is taken back (not one made before)."""
    digests: dict[Path, str] | None = {} if verify is not None else None
    pinned_before = set(rpc.pin_ls(client)) if verify is not None else set()
    with Progress(f"publishing {len(files)} files", sum(sizes.values())) as bar:
        root = treeupload.add_tree(client, files, pin=True, pin_name=pin_name, digests=digests,
                            on_sent=bar.advance if progress and bar.enabled else None)
    if verify is not None and digests is not None:
        try:
            verify(digests)
        except RepoError:
            if root not in pinned_before:
                rpc.pin_rm(client, root)
            raise
    cids = _file_cids(client, root, files)
    missing = sorted(set(files) - set(cids))
    if missing:
        raise NodeError(f"IPFS add of {where} gave no CID for: {', '.join(missing[:10])}")
    return root, cids


def _file_cids(client: Any, root: str, files: Iterable[str]) -> dict[str, str]:
    """``{path: CID}`` of ``files`` (paths in the tree ``root``), one directory listing per directory."""
    by_dir: dict[str, list[str]] = {}
    for rel in files:
        by_dir.setdefault(posixpath.dirname(rel), []).append(posixpath.basename(rel))
    out: dict[str, str] = {}
    for d, names in sorted(by_dir.items()):
        listed = rpc.dir_cids(client, f"/ipfs/{root}/{d}" if d else f"/ipfs/{root}")
        out.update({posixpath.join(d, n): listed[n] for n in names if n in listed})
    return out


def _parents(paths: Iterable[str]) -> set[str]:
    """Every directory above these paths ("" excluded)."""
    out: set[str] = set()
    for d in {rel.rpartition("/")[0] for rel in paths}:  # a few directories for thousands of files
        while d and d not in out:
            out.add(d)
            d = d.rpartition("/")[0]
    return out


def _incremental(client: Any, previous: str, files: dict[str, Path], changed: list[str],
                 removed: list[str], state: PublishCache, sizes: dict[str, int], progress: bool,
                 verify: Md5Check | None) -> tuple[str, dict[str, str]]:
    """The new root from ``previous`` with ``changed`` (re)added and ``removed`` unlinked, in MFS.

    The changed files go to kubo first, in one unpinned ``add`` (linked at a scratch MFS path, which
    keeps them from the garbage collector), their md5 computed on the way for ``verify`` (a refusal
    leaves nothing linked or pinned). Only those whose CID is not the one they had are linked
    (a mirror update rewrites an extension's ``.info``, ``.list`` and its unchanged index files too,
    with the same bytes: about half of what changed by ``stat``): see ``_rebuild``.
    """
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    stage, scratch = f"{MFS_STAGE}-{token}", f"{MFS_STAGE}-{token}-added"
    cids: dict[str, str] = {}
    try:
        digests = _add_changed(client, files, changed, sizes, scratch, cids, progress)
        if verify is not None:
            verify(digests)
        relink = _new_cids(changed, cids, state)
        root = _rebuild(client, previous, stage, files, relink, removed, state) if relink or removed \
            else previous  # the same bytes everywhere: the same tree
    finally:
        try:
            # MFS content is kept from GC: let it go (the new root is pinned by the caller)
            rpc.files_rm(client, [stage, scratch], force=True)  # force: either may not exist
        except NodeError as exc:
            log.warning("could not remove the MFS staging directories %s: %s", stage, exc)
    return root, cids


def _new_cids(changed: list[str], cids: dict[str, str], state: PublishCache) -> dict[str, str]:
    """``{path: CID}`` of the changed files whose CID is not the one they had (new files included)."""
    out: dict[str, str] = {}
    for rel in changed:
        old = state.files.get(rel)
        if old is None or old.cid != cids[rel]:
            out[rel] = cids[rel]
    return out


def _add_changed(client: Any, files: dict[str, Path], changed: list[str], sizes: dict[str, int],
                 scratch: str, cids: dict[str, str], progress: bool) -> dict[Path, str]:
    """Add ``changed`` in one unpinned request, linked at ``scratch``; ``cids`` gets their CIDs.
    Returns the md5 of each ``.tcz`` among them, computed from the bytes sent."""
    digests: dict[Path, str] = {}
    with Progress(f"adding {len(changed)} changed files", sum(sizes[rel] for rel in changed)) as bar:
        if changed:
            treeupload.add_tree(client, {rel: files[rel] for rel in changed}, pin=False, to_files=scratch,
                                cids=cids, digests=digests,
                                on_sent=bar.advance if progress and bar.enabled else None)
    missing = sorted(set(changed) - set(cids))
    if missing:
        raise NodeError(f"IPFS add gave no CID for: {', '.join(missing[:10])}")
    return digests


def _rebuild(client: Any, previous: str, stage: str, files: dict[str, Path], relink: dict[str, str],
             removed: list[str], state: PublishCache) -> str:
    """Copy ``previous`` to ``stage``, unlink ``removed``, link each of ``relink`` (path -> CID) with
    ``files cp --force`` without a flush, and flush the stage once at the end (and every
    ``FLUSH_EVERY`` links): the directory nodes are written out once, not once per file. ``files rm``
    always flushes (to the MFS root), so it is used only for what is gone (and, on a kubo without
    ``cp --force``, for the files relinked too). Returns the stage's root CID."""
    old_dirs, new_dirs = _parents(state.files), _parents(files)
    gone = {d for d in old_dirs - new_dirs if posixpath.dirname(d) not in old_dirs - new_dirs}
    overwrite = _can_overwrite(client)
    unlink = [rel for rel in (removed if overwrite else [*relink, *removed]) if rel in state.files
              and not any(rel.startswith(d + "/") for d in gone)]
    rpc.files_cp(client, f"/ipfs/{previous}", stage)
    for i in range(0, len(unlink), RM_BATCH):
        rpc.files_rm(client, [f"{stage}/{rel}" for rel in unlink[i:i + RM_BATCH]])
    if gone:
        rpc.files_rm(client, [f"{stage}/{d}" for d in sorted(gone)], recursive=True)
    made = new_dirs - old_dirs
    for d in sorted(made - _parents(made)):  # mkdir -p: the deepest ones make the rest
        rpc.files_mkdir(client, f"{stage}/{d}")
    with duplex.Session(client.tce_api, timeout=LINK_TIMEOUT) as via:
        for i, (rel, cid) in enumerate(relink.items()):
            if i and i % FLUSH_EVERY == 0:
                rpc.files_flush(client, stage, via=via)
            _link(client, f"/ipfs/{cid}", f"{stage}/{rel}", stage, overwrite, via)
        root = rpc.files_flush(client, stage, via=via)
    if not root:
        raise NodeError("MFS returned no CID for the new root")
    return root


def _link(client: Any, source: str, dest: str, stage: str, overwrite: bool, via: duplex.Session) -> None:
    """``files cp`` unflushed; when kubo has reached its limit of unflushed operations (it counts them
    for the whole daemon, other clients' too, and ``Internal.MFSNoFlushLimit`` may be lower than
    ``FLUSH_EVERY``), flush the stage and link again."""
    try:
        rpc.files_cp(client, source, dest, force=overwrite, flush=False, via=via)
    except NodeError as exc:
        if "unflushed MFS operations" not in str(exc):
            raise
        rpc.files_flush(client, stage, via=via)
        rpc.files_cp(client, source, dest, force=overwrite, flush=False, via=via)


def _can_overwrite(client: Any) -> bool:
    """Whether this kubo replaces a file with ``files cp --force`` (else the old file is unlinked
    first, with ``files rm``: one flush per file)."""
    return rpc.parse_version(rpc.version(client)) >= rpc.CP_FORCE


def extension_diff(before: dict[str, str], after: dict[str, str]) -> dict[str, Any]:
    """Extensions (``.tcz`` paths) added, removed and changed between two publishes (``{path: CID}``);
    an extension changed when its ``.tcz`` or any of its sidecars did. ``other``: lists and index files
    that were added, removed or changed."""
    def owner(rel: str) -> str | None:
        i = rel.rfind(tcrepo.EXT)
        if i <= 0:
            return None
        head, tail = rel[:i + len(tcrepo.EXT)], rel[i + len(tcrepo.EXT):]
        return head if tail == "" or tail in tcrepo.SIDECARS else None

    exts_before = {r for r in before if r.endswith(tcrepo.EXT)}
    exts_after = {r for r in after if r.endswith(tcrepo.EXT)}
    touched = {r for r in set(before) | set(after) if before.get(r) != after.get(r)}
    changed = {o for r in touched if (o := owner(r)) in exts_before & exts_after}
    other = sorted(r for r in touched if owner(r) is None)
    return {"added": sorted(exts_after - exts_before), "removed": sorted(exts_before - exts_after),
            "changed": sorted(changed), "other": other}


def verify_published(client: Any, result: PublishResult) -> list[str]:
    """Cross-check a publish of a flat repo against the node: root pinned, entries and CIDs as reported.

    Returns a list of discrepancies (empty when all is well).
    """
    issues: list[str] = []
    if result.root_cid not in rpc.pin_ls(client, result.root_cid):
        issues.append(f"root {result.root_cid} is not pinned")
    links = {e["Name"]: (e["Hash"], int(e["Size"])) for e in rpc.ls(client, result.root_cid)}
    if links != result.files:
        extra = sorted(set(links) ^ set(result.files))
        changed = sorted(n for n in set(links) & set(result.files) if links[n] != result.files[n])
        issues.append(f"directory differs from the publish result: names {extra}, entries {changed}")
    return issues
