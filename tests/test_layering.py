"""The package's layering, read from the code (AST, lazy imports inside functions included): who may
import whom (the table in docs/ARCHITECTURE.md), what the agent .tcz carries, and no import cycle.

To add an arrow, change ``MAY_IMPORT`` here and the table in docs/ARCHITECTURE.md together.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tce_ipfs.build import recipes, vendor

PKG_DIR = vendor.package_dir()

# Top-level modules everything may build on; they import only each other (never a subpackage).
SHARED = {"errors", "proc", "log", "settings", "arch", "tcrepo", "tcindex", "tctree", "tcmirror", "cidtext",
          "bootcodes"}
ENTRY = {"cli", "__main__"}  # the command line: the only importer of commands/
PACKAGES = {"build", "ipfs", "media", "testbed", "agent", "commands"}

# What each layer may import ("tce_ipfs" itself, the package root with __version__, is open to all).
MAY_IMPORT: dict[str, set[str]] = {
    "shared": {"shared"},
    "build": {"shared", "build"},
    "ipfs": {"shared", "ipfs"},
    "media": {"shared", "build", "media"},
    "testbed": {"shared", "build", "ipfs", "media", "testbed"},
    "agent": {"agent"},  # and AGENT_SHARED below, nothing else
    "commands": {"shared", "build", "ipfs", "media", "testbed", "agent", "commands", "entry"},
    "entry": {"shared", "commands", "entry"},
}
# The booted TC has only what tce-ipfs-agent.tcz ships: these, the agent and the CLI around it.
AGENT_SHARED = {"tce_ipfs.errors", "tce_ipfs.proc", "tce_ipfs.tcrepo", "tce_ipfs.ipfs.rpc",
                "tce_ipfs.ipfs.opennet"}
# `tce-ipfs seed serve` on TC (commands.agent) brings the seed library and what it imports.
AGENT_TCZ = ["tce_ipfs", "tce_ipfs.__main__", "tce_ipfs.agent", "tce_ipfs.agent.machine",
             "tce_ipfs.agent.ops", "tce_ipfs.bootcodes", "tce_ipfs.cidtext", "tce_ipfs.cli",
             "tce_ipfs.commands", "tce_ipfs.commands.agent", "tce_ipfs.errors", "tce_ipfs.ipfs",
             "tce_ipfs.ipfs.duplex", "tce_ipfs.ipfs.isolation", "tce_ipfs.ipfs.names",
             "tce_ipfs.ipfs.netmode", "tce_ipfs.ipfs.node",
             "tce_ipfs.ipfs.opennet", "tce_ipfs.ipfs.pubcache", "tce_ipfs.ipfs.publish",
             "tce_ipfs.ipfs.roots", "tce_ipfs.ipfs.rpc", "tce_ipfs.ipfs.seed", "tce_ipfs.ipfs.seedline",
             "tce_ipfs.ipfs.seedstatus",
             "tce_ipfs.ipfs.swarmkey", "tce_ipfs.ipfs.treeupload", "tce_ipfs.log", "tce_ipfs.proc",
             "tce_ipfs.settings", "tce_ipfs.tcindex", "tce_ipfs.tcrepo", "tce_ipfs.tctree"]


def all_modules() -> list[str]:
    out = []
    for path in sorted(PKG_DIR.rglob("*.py")):
        parts = list(path.relative_to(PKG_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append(".".join(parts))
    return out


def layer(module: str) -> str:
    """The layer of a module: shared, entry, a package name, or "root" (tce_ipfs itself)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    if parts[1] in PACKAGES:
        return parts[1]
    if parts[1] in SHARED:
        return "shared"
    if parts[1] in ENTRY:
        return "entry"
    raise AssertionError(f"{module} is in no layer: add it to SHARED or to a package (and to the docs)")


@functools.cache
def edges() -> tuple[tuple[str, str], ...]:
    """(importer, imported) for every tce_ipfs import in the package."""
    return tuple((module, imported) for module in all_modules()
                 for imported in vendor.module_imports(module, PKG_DIR))


def test_every_module_has_a_layer() -> None:
    modules = all_modules()
    assert len(modules) > 40
    for module in modules:
        layer(module)


def test_imports_follow_the_layers() -> None:
    wrong = []
    for src, dst in edges():
        have, want = layer(src), layer(dst)
        if want == "root":
            continue
        allowed = want == "agent" or dst in AGENT_SHARED if have == "agent" else want in MAY_IMPORT[have]
        if not allowed:
            wrong.append(f"{src} ({have}) imports {dst} ({want})")
    assert not wrong, "\n".join(wrong)


def test_package_inits_import_nothing() -> None:
    """Importing tce_ipfs.ipfs.rpc on a TC machine runs tce_ipfs/ipfs/__init__.py: it must stay empty,
    as must the other package faces (bench/ is a module with a face of its own, run())."""
    for pkg in sorted(PACKAGES):
        assert vendor.module_imports(f"tce_ipfs.{pkg}", PKG_DIR) == [], pkg
    assert vendor.module_imports("tce_ipfs", PKG_DIR) == []


def test_only_the_cli_reaches_commands() -> None:
    for src, dst in edges():
        if layer(dst) == "commands":
            assert layer(src) in ("commands", "entry"), f"{src} imports {dst}"


def test_the_agent_tcz_carries_exactly_what_the_agent_imports() -> None:
    """recipes.module_closure of the agent recipe: these modules and no more (tests/test_recipes.py
    checks the built .tcz imports them in an isolated interpreter)."""
    entries = [m for item in recipes.load("tce-ipfs-agent").install if item.kind == "python-package"
               for m in item.modules]
    assert vendor.module_closure(entries, PKG_DIR) == AGENT_TCZ


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1 or v in graph.get(v, ()):
                found.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]] and cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {m: set() for m in all_modules()}
    for src, dst in edges():
        if dst in graph:
            graph[src].add(dst)
    assert cycles(graph) == []


@pytest.mark.parametrize("text", ["from tce_ipfs.testbed import guest\n",
                                  "def f():\n    from tce_ipfs.testbed.guest import ensure_base\n"])
def test_a_product_module_reaching_the_testbed_is_caught(tmp_path: Path, text: str) -> None:
    """The rule sees module-level and lazy imports alike (netboot once imported the test base lazily)."""
    pkg = tmp_path / "tce_ipfs"
    for rel in ("__init__.py", "media/__init__.py", "testbed/__init__.py", "testbed/guest.py"):
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text("")
    (pkg / "media/netboot.py").write_text(text)
    found = vendor.module_imports("tce_ipfs.media.netboot", pkg)
    assert found == ["tce_ipfs.testbed.guest"]
    assert layer(found[0]) not in MAY_IMPORT[layer("tce_ipfs.media.netboot")]
