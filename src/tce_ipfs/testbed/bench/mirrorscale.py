"""The ``mirror`` benchmark: publishing a whole TC mirror tree, republishing it after a small change,
and resolving its IPNS name through a seed.

* publish: ``tce-ipfs publish`` of a synthetic mirror (``samplemirror``: 2 releases x 2 arches, every
  sidecar and index file; ``mirror_extensions`` extensions, ``mirror_mib`` MiB in all) vs a bare
  ``ipfs add -r`` of the same tree, in the same run, each on a fresh node (order alternated; the files
  are read once before, so both find them in the page cache).
* republish: 1% of the extensions get new content, then the incremental republish (only those files
  are hashed and added, the directories rebuilt in MFS), as a fraction of the full publish.
* ipns: a seed kubo (``Routing.Type dhtserver``, as ``seed serve --name``) holds the name; a fresh
  machine kubo (``dhtclient``, as the boot hook runs it) is started, dials the seed and resolves the
  name. Timed from the daemon's start to the resolved CID, as the hook sees it; both on loopback (the
  LAN's latency is not in it).
"""

from __future__ import annotations

import logging
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from tce_ipfs import tcindex
from tce_ipfs.errors import NodeError
from tce_ipfs.ipfs import names, publish, rpc
from tce_ipfs.ipfs.node import Node
from tce_ipfs.testbed import samplemirror

log = logging.getLogger(__name__)

IPNS_RUNS = 5


def _read_all(tree: Path) -> None:
    for f in tree.rglob("*"):
        if f.is_file():
            with f.open("rb") as fh:
                while fh.read(1 << 20):
                    pass


def bench_mirror(kubo: Path, work: Path, extensions: int, total_mib: int, repeats: int) -> dict[str, Any]:
    per_dir = max(1, extensions // 4)
    each = max(4096, total_mib * 2**20 // (per_dir * 4))
    tree = work / "mirror-tree"
    started = time.perf_counter()
    mirror = samplemirror.build(tree, extensions=per_dir, ext_bytes=each, extras=False)
    log.info("mirror bench: built %d extensions, %.1f MiB in %.0f s", per_dir * 4, mirror.bytes / 2**20,
             time.perf_counter() - started)
    bare: list[float] = []
    ours: list[float] = []
    incremental: list[float] = []
    roots: dict[str, str] = {}
    _read_all(tree)
    for r in range(repeats):
        for job in (["bare", "publish"] if r % 2 == 0 else ["publish", "bare"]):
            # A fresh node per run: a repo that has taken and dropped 3 GiB a few times adds slower
            # (what ran second was up to 2x slower, whichever it was), so nothing is carried over.
            repo = work / f"mirror-node-{r}-{job}"
            with Node(repo, kubo) as node, node.client(timeout=3600) as client:
                t0 = time.perf_counter()
                if job == "bare":
                    roots["bare"] = node.kubo_cmd("add", "-r", "-Q", "--cid-version=1", "--raw-leaves",
                                                  str(tree), timeout=7200).strip()
                    bare.append(time.perf_counter() - t0)
                else:
                    roots["publish"] = publish.publish(tree, client, progress=False, full=True).root_cid
                    ours.append(time.perf_counter() - t0)
            shutil.rmtree(repo, ignore_errors=True)
            log.info("mirror bench: %s run %d: %.1f s", job, r + 1, (bare if job == "bare" else ours)[-1])
    with Node(work / "mirror-node", kubo) as node, node.client(timeout=3600) as client:
        # Republish after 1% changed: a full publish first (the cache remembers it), then the change.
        base = publish.publish(tree, client, progress=False, full=True, cache=work / "mirror-cache.json")
        changed = max(1, per_dir * 4 // 100)
        for i in range(changed):
            prefix = mirror.dirs[i % 4]
            name = mirror.extensions[prefix][(i // 4) * 7 % per_dir]
            samplemirror.change(mirror, prefix, name, generation=1, reindex=False)
        for prefix in mirror.dirs:
            tcindex.write_indexes(mirror.tcz(prefix))
        t0 = time.perf_counter()
        inc = publish.publish(tree, client, progress=False, cache=work / "mirror-cache.json")
        incremental.append(time.perf_counter() - t0)
        log.info("mirror bench: republish after %d changed: %.1f s (%s, %d files added)", changed,
                 incremental[-1], inc.mode, inc.added_files)
        ipns = _bench_ipns(kubo, work, inc.root_cid)
    shutil.rmtree(tree, ignore_errors=True)
    full = statistics.median(ours)
    return {
        "extensions": per_dir * 4, "dirs": mirror.dirs, "bytes": mirror.bytes,
        "files": len(base.files),
        "bare_add_s": bare, "publish_s": ours,
        "publish_ratio_median": full / statistics.median(bare),
        "publish_ratio_per_repeat": [o / b for o, b in zip(ours, bare, strict=True)],
        "same_root_as_bare_add": roots.get("bare") == roots.get("publish"),
        "changed_extensions": changed, "republish_s": incremental, "republish_mode": inc.mode,
        "republish_added_files": inc.added_files, "republish_fraction": incremental[0] / full,
        "ipns": ipns,
    }


def _bench_ipns(kubo: Path, work: Path, root: str) -> dict[str, Any]:
    """Start-to-resolved times of a machine kubo resolving the seed's name (see the module doc)."""
    seed_cfg = {"Routing.Type": "dhtserver"}
    with Node(work / "ipns-seed", kubo, extra_config=seed_cfg) as seed, seed.client(timeout=600) as sc:
        record = names.publish_name(sc, "bench-mirror", root)  # the root's blocks need not be here
        peer = next(a for a in seed.swarm_addrs if a.startswith("/ip4/127.0.0.1/tcp/"))
        to_resolved: list[float] = []
        resolve_only: list[float] = []
        attempts: list[int] = []
        for i in range(IPNS_RUNS):
            machine = Node(work / f"ipns-machine-{i}", kubo, extra_config={"Routing.Type": "dhtclient"})
            machine.init()
            t0 = time.perf_counter()
            machine.start()
            try:
                with machine.client(timeout=120) as mc:
                    rpc.swarm_connect(mc, peer, timeout=30)
                    t1 = time.perf_counter()
                    got, tries = _resolve(mc, record.name)
                    t2 = time.perf_counter()
            finally:
                machine.stop()
            if got != f"/ipfs/{root}":
                raise RuntimeError(f"ipns bench: {record.name} resolved to {got}, not /ipfs/{root}")
            to_resolved.append(t2 - t0)
            resolve_only.append(t2 - t1)
            attempts.append(tries)
            log.info("ipns bench: run %d: start to resolved %.2f s (resolve %.2f s)", i + 1, t2 - t0, t2 - t1)
    return {"name": record.name, "runs": IPNS_RUNS, "start_to_resolved_s": to_resolved,
            "start_to_resolved_median_s": statistics.median(to_resolved), "resolve_s": resolve_only,
            "resolve_median_s": statistics.median(resolve_only), "attempts": attempts, "where": "loopback"}


def _resolve(client: Any, name: str) -> tuple[str, int]:
    """Resolve as the boot hook does: right after the dial the seed may not be in the DHT routing
    table yet (identify is still running) and kubo fails at once; retry then, up to 10 s."""
    deadline = time.monotonic() + 10
    tries = 0
    while True:
        tries += 1
        try:
            return rpc.name_resolve(client, f"/ipns/{name}", timeout=60), tries
        except NodeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
