"""Publish a Tiny Core repository directory to kubo as ONE flat UnixFS directory (one root CID).

Input layouts (see ``tcrepo.scan_repo``):

* flat, like a mirror's ``tcz/``: ``DIR/*.tcz`` + sidecars (``.md5.txt .dep .info .list .tree .zsync``)
  + ``*.lst`` + index files (``md5.db.gz`` ...);
* a tce dir: ``DIR/optional/*`` + ``DIR/*.lst`` (``onboot.lst`` ...) -- flattened on publish.

Published layout (what the boot hook and the agent fetch): everything at the root,
``/ipfs/<root>/onboot.lst``, ``/ipfs/<root>/NAME.tcz``, ``/ipfs/<root>/NAME.tcz.md5.txt``,
``/ipfs/<root>/NAME.tcz.dep``. CIDv1 with raw leaves and kubo's default chunker, so the same files
give the same root CID on any node, and an unchanged file keeps its CID when others are added:
re-publishing stores only the new blocks. The root is pinned (recursively).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tce_ipfs import tcrepo
from tce_ipfs.errors import NodeError, RepoError
from tce_ipfs.ipfs import rpc
from tce_ipfs.log import Progress, human

log = logging.getLogger(__name__)


@dataclass
class PublishResult:
    root_cid: str
    files: dict[str, tuple[str, int]]  # published name -> (CID, size in bytes)
    total_size: int
    layout: str = "flat"
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "root": self.root_cid,
            "files": {name: {"cid": cid, "size": size} for name, (cid, size) in self.files.items()},
            "total": self.total_size,
            "layout": self.layout,
            "warnings": self.warnings,
        }


def publish(repo_dir: Path, client: Any, *, check: bool = True, progress: bool = True,
            kernel: str | None = None) -> PublishResult:
    """Check (unless ``check=False``), add and pin ``repo_dir``; return the root CID and per-file CIDs.

    Raises ``RepoError`` listing every bad file (corrupt ``.tcz``, missing ``.md5.txt`` or dependency,
    list naming a missing extension, unsafe name). ``kernel`` resolves ``-KERNEL`` dependencies for
    one kernel release (default: any variant present will do).

    Every check, the md5 hashing included, runs *before* anything is sent to kubo: a refused repo
    leaves no trace in the node (no pin, no blocks). The hashing runs on all cores (hashlib releases
    the GIL) and reads the files into the page cache that the add then reads from.
    """
    repo = tcrepo.scan_repo(Path(repo_dir))
    problems = tcrepo.check_repo(repo, kernel) if check else list(repo.ignored)
    _refuse_on_errors(repo, problems)
    warnings = [str(p) for p in problems if not p.is_error]
    for w in warnings:
        log.warning("%s: %s", repo.root, w)
    if not repo.extensions:
        raise RepoError(f"refusing to publish {repo.root}: no .tcz files found")

    files = repo.published()
    sizes = {name: path.stat().st_size for name, path in files.items()}
    total = sum(sizes.values())
    root, cids = _add(client, repo.root, files, sizes, total, progress)
    result = PublishResult(root_cid=root,
                           files={name: (cids[name], sizes[name]) for name in files},
                           total_size=total, layout=repo.layout, warnings=warnings)
    log.info("published %d files (%s, %d extensions) from %s as %s", len(files), human(total),
             len(repo.extensions), repo.root, root)
    return result


def _refuse_on_errors(repo: tcrepo.RepoFiles, problems: list[tcrepo.Problem]) -> None:
    errors = tcrepo.errors_only(problems)
    if errors:
        raise RepoError(f"refusing to publish {repo.root}: {len(errors)} problem(s)",
                        problems=[str(p) for p in errors],
                        hint="fix or remove the files named (or use --no-check to publish anyway)")


def _add(client: Any, where: Path, files: dict[str, Path], sizes: dict[str, int], total: int,
         progress: bool) -> tuple[str, dict[str, str]]:
    """Add ``files`` as one directory; return (root CID, {name: CID})."""
    cids: dict[str, str] = {}
    root: str | None = None
    with Progress(f"publishing {len(files)} files", total) as bar:
        want_progress = progress and bar.enabled
        sent: dict[str, int] = {}

        def advance(name: str, upto: int) -> None:
            step = upto - sent.get(name, 0)
            if step > 0:
                sent[name] = upto
                if want_progress:
                    bar.advance(step)

        for event in rpc.add_files(client, list(files.values()), pin=True, progress=want_progress):
            name = str(event.get("Name", ""))
            if "Hash" not in event:
                advance(name, int(event.get("Bytes", 0)))
            elif name == "":
                root = str(event["Hash"])
            else:
                cids[name] = str(event["Hash"])
                advance(name, sizes.get(name, 0))
    if root is None:
        raise NodeError(f"IPFS add of {where} returned no root directory CID")
    missing = sorted(set(files) - set(cids))
    if missing:
        raise NodeError(f"IPFS add of {where} returned no CID for: {', '.join(missing)}")
    return root, cids


def verify_published(client: Any, result: PublishResult) -> list[str]:
    """Cross-check a publish against the node: root pinned, entries and CIDs as reported.

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
