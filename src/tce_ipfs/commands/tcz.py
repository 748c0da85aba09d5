"""`tce-ipfs tcz pack|build|list`: Tiny Core extensions from a directory or a recipe."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from tce_ipfs.arch import Arch
from tce_ipfs.commands import action_group

EPILOG = """\
examples:
  tce-ipfs tcz pack ./tree -o out/hello.tcz                  pack a tree (relative to /) as hello.tcz
  tce-ipfs tcz pack ./tree -o out/hello.tcz --dep ncursesw --info-field Author="Jane Doe"
  tce-ipfs tcz build ipfs --arch x86_64 -o out               kubo as ipfs.tcz (+ sidecars)
  tce-ipfs tcz build tce-ipfs-agent --arch aarch64 -o out    the Python agent, vendored
  tce-ipfs tcz build python3.11 --arch aarch64 -o out        CPython from Debian packages (runtime.toml)
  tce-ipfs tcz list                                          recipes in tcz-build/
"""


def _recipe_names() -> list[str]:
    from tce_ipfs.build import recipes

    try:
        return recipes.list_recipes()
    except OSError:
        return []


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    tsub = action_group(sub, common, "tcz", help="pack a directory or build a recipe as a .tcz",
                        description="Tiny Core extensions (.tcz + .md5.txt/.list/.info/.dep).",
                        epilog=EPILOG)

    pk = tsub.add_parser("pack", parents=[common], help="pack DIR (a tree relative to /) as NAME.tcz",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    pk.add_argument("dir", type=Path, metavar="DIR", help="the tree, e.g. containing usr/local/bin/...")
    pk.add_argument("-o", "--output", type=Path, required=True, metavar="OUT/NAME.tcz",
                    help="the image to write; sidecars go next to it")
    pk.add_argument("--dep", action="append", default=[], metavar="A.tcz",
                    help="a direct dependency (repeatable; .tcz optional, -KERNEL allowed)")
    pk.add_argument("--info-field", action="append", default=[], metavar="K=V",
                    help="set a .info field, e.g. Author=Me (repeatable; \\n in V starts a new line)")
    pk.add_argument("--block-size", default="4K", metavar="SIZE",
                    help="squashfs block size, power of two 4K..1M (default 4K, TC's)")
    pk.add_argument("--compression", default="gzip", choices=["gzip", "xz"],
                    help="squashfs compression (default gzip, TC's)")
    pk.set_defaults(func=cmd_pack)

    names = _recipe_names()
    b = tsub.add_parser("build", parents=[common], help="build a recipe from tcz-build/ for an arch",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("recipe", metavar="{" + ",".join(names) + "}" if names else "RECIPE",
                   help="recipe name (see `tce-ipfs tcz list`)")
    b.add_argument("--arch", required=True, metavar="ARCH", help=f"target arch: {', '.join(Arch.names())}")
    b.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                   help="directory for NAME.tcz and its sidecars (created if missing)")
    b.add_argument("--testbase", action="store_true",
                   help="runtime recipes: also build glibc-testbase.tcz (TEST ONLY, for the busybox "
                        "test base) and list it as a dependency")
    b.set_defaults(func=cmd_build)

    ls = tsub.add_parser("list", parents=[common], help="list the recipes in tcz-build/")
    ls.set_defaults(func=cmd_list)


def parse_size(text: str) -> int:
    from tce_ipfs.errors import UsageError

    m = re.fullmatch(r"(\d+)\s*([kKmM]?)(?:i?[bB])?", text.strip())
    if not m:
        raise UsageError(f"block size {text!r} is not a size like 4096, 4K or 128K")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]


def parse_info_fields(items: list[str]) -> dict[str, str]:
    from tce_ipfs.errors import UsageError

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--info-field {item!r} is not K=V")
        out[key.strip()] = value.replace("\\n", "\n")
    return out


def _report(args: argparse.Namespace, result: Any) -> int:
    from tce_ipfs.cli import emit
    from tce_ipfs.log import human

    width = max(len(str(p)) for p in result.paths)
    lines = [f"{p!s:<{width}}  {p.stat().st_size:>10} bytes  {human(p.stat().st_size)}"
             for p in result.paths]
    lines.append(f"md5 {result.md5}, {len(result.files)} files"
                 + (f", deps: {' '.join(result.deps)}" if result.deps else ""))
    emit(args, result.as_dict(), "\n".join(lines))
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from tce_ipfs.build import tcz

    result = tcz.pack(args.dir, args.output, deps=args.dep, info=parse_info_fields(args.info_field),
                      block_size=parse_size(args.block_size), compression=args.compression)
    return _report(args, result)


def cmd_build(args: argparse.Namespace) -> int:
    from tce_ipfs.build import recipes

    result = recipes.build(args.recipe, Arch.parse(args.arch), args.output, testbase=args.testbase)
    return _report(args, result)


def cmd_list(args: argparse.Namespace) -> int:
    from tce_ipfs.build import recipes
    from tce_ipfs.cli import emit

    rows = []
    for name in recipes.list_recipes():
        spec = recipes.runtime_spec(name)
        if spec is not None:
            from tce_ipfs.build import pyruntime

            rt = pyruntime.load_spec(spec)
            rows.append({"name": name, "version": "(from Debian)", "description": rt.description,
                         "deps": [], "kinds": ["python-runtime"], "path": str(spec)})
            continue
        r = recipes.load(name)
        values = recipes.variables(Arch.host(), r)
        rows.append({"name": name, "version": recipes.expand(r.version, values, str(r.path)),
                     "description": recipes.expand(r.description, values, str(r.path)),
                     "deps": list(r.deps), "kinds": [i.kind for i in r.install],
                     "path": str(r.path)})
    width = max((len(r["name"]) for r in rows), default=0)
    text = "\n".join(f"{r['name']:<{width}}  {r['description']}" for r in rows) or "(no recipes)"
    emit(args, rows, text)
    return 0
