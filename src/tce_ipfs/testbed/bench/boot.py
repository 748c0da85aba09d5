"""The boot benchmark (``tce-ipfs bench --only boot``): where one guest's boot spends its time over IPFS
and over HTTP, measured in the same run.

Per arch, one guest -- the demo's: the TC-layout test base, the P2P hook initrd and the sample repo's
6-extension onboot closure (``samplerepo``) -- boots alternately with

    tce=ipfs:<CID> ipfs.peers=<host seed>        and        tce=http://<host mirror>

``repeats`` times each (the order flips every round). Both modes use the same kernel, the same initrds,
the same files and the same restricted user network (both guest forwards exist in both modes), so on a
busy machine the ratios stay meaningful even when absolute times drift.

Each boot is cut into steps from three clocks:

* the host's: QEMU start, the moment the guest's sentinel line appears (``wall``, the figure the issue
  tracks) and QEMU's exit; also QEMU's CPU time up to the sentinel (``cpu``: the guest's work, which
  other load on the host stretches far less than it stretches wall time);
* the guest's uptime: the hook's ``marks=`` (when each of its steps ended), ``t_md5``/``t_place`` (time
  spent verifying and placing files) and the check script's ``bootsync_up``/``sentinel_up``;
* joined at the sentinel: host time = guest uptime + (wall - ``sentinel_up``).

Steps (:data:`STEPS`, a stacked bar per mode in the plot): kernel, initrd and tc-config up to the hook;
kubo init (mount + the node's settings; IPFS only); DHCP (what is left of the wait for an address);
daemon start (kubo's one start: the repo, then the node; with a kubo that needs ``ipfs init`` first,
that too); peer connect; list; first byte; transfer; md5; placing; the rest of the hook; TC's
loading (tce-setup loading the list, install scripts); the check script; shutdown (sentinel to QEMU's
exit). With parallel fetches md5 and placing overlap transfers: their bars show the time spent on
them, ``transfer`` the rest of the span from the first byte to the last file. Numbers, never asserts.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tce_ipfs.arch import Arch

log = logging.getLogger(__name__)

SCENARIO = "boot"
# baseline first; "gateway" is tce=ipfs: with ipfs.gateway= the seed's trustless gateway (CARs)
MODES = ("http", "ipfs", "gateway")
MODE_LABELS = {"http": "tce=http:// (mirror)", "ipfs": "tce=ipfs: (seed, bitswap)",
               "gateway": "tce=ipfs: + ipfs.gateway= (CARs)"}
MIRROR_GUEST_PORT = 8080  # where the host's HTTP mirror appears in the guest (10.0.2.100:8080)
HOOK_TIMEOUT = 90  # ipfs.timeout= for both modes

# (step, mark that ends it); a step starts where the previous present mark ended.
HOOK_MARKS: tuple[tuple[str, str], ...] = (
    ("kubo init", "kubo_init"),
    ("DHCP", "net"),
    ("daemon start", "kubo_ready"),
    ("peer connect", "peers"),
    ("list CAR (gateway)", "gateway"),
    ("list", "list"),
    ("first byte", "first_byte"),
)
STEPS: tuple[str, ...] = (
    "kernel, initrd, tc-config", *(s for s, _ in HOOK_MARKS), "transfer", "md5", "placing",
    "hook, other", "TC's loading", "check script", "shutdown",
)


@dataclass
class BootBenchConfig:
    arches: tuple[Arch, ...] = (Arch.X86_64,)
    repeats: int = 3
    modes: tuple[str, ...] = MODES  # which of MODES to boot (the smoke test: http and ipfs)
    memory: int = 512  # MiB, as in the demo
    timeout: float = 300.0  # per boot
    out: Path = Path("bench-results")
    work: Path | None = None  # build products and console logs (a temporary directory when None)


@dataclass
class BootRecord:
    mode: str
    round: int
    wall_s: float  # QEMU start -> sentinel
    total_s: float  # QEMU start -> QEMU exit
    cpu_s: float | None  # QEMU's CPU time up to the sentinel (the guest's work; steadier on a busy host)
    hook_s: float | None
    first_byte_s: float | None  # kubo daemon start -> first .tcz byte (IPFS only)
    seed_bytes_sent: int
    kubo_rss_kib: float | None = None  # the hook's kubo: peak RSS (VmHWM) when the check ran
    gateway_bytes: float | None = None  # CAR bytes imported from the seed's gateway (mode gateway)
    steps: dict[str, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    console: list[tuple[float, str]] = field(default_factory=list)  # host time, hook/TC lines


def parse_marks(text: str) -> dict[str, float]:
    """``"start:2.7,kubo_init:5.6,..."`` -> ``{"start": 2.7, ...}`` (a repeated name: the first one)."""
    marks: dict[str, float] = {}
    for item in text.split(","):
        name, _, value = item.partition(":")
        try:
            marks.setdefault(name.strip(), float(value))
        except ValueError:
            continue
    return marks


def _float(fields: Mapping[str, str], key: str) -> float | None:
    try:
        return float(fields[key])
    except (KeyError, ValueError):
        return None


def steps_of(fields: Mapping[str, str], wall_s: float, total_s: float) -> dict[str, float]:
    """The boot cut into :data:`STEPS` (seconds; they add up to ``total_s``) from the sentinel line's
    fields (the hook's status plus the check script's uptimes) and the host's two times."""
    marks = parse_marks(fields.get("marks", ""))
    sentinel_up = _float(fields, "sentinel_up")
    bootsync_up = _float(fields, "bootsync_up")
    if sentinel_up is None or bootsync_up is None or "start" not in marks or "end" not in marks:
        return {}
    offset = wall_s - sentinel_up  # host time of guest uptime 0
    steps = dict.fromkeys(STEPS, 0.0)
    steps["kernel, initrd, tc-config"] = offset + marks["start"]
    at = marks["start"]
    for step, mark in HOOK_MARKS:
        if mark in marks:
            steps[step] = max(0.0, marks[mark] - at)
            at = max(at, marks[mark])
    fetched = max(at, marks.get("fetched", at))
    md5 = _float(fields, "t_md5") or 0.0
    placing = _float(fields, "t_place") or 0.0
    span = fetched - at
    steps["md5"] = min(md5, span)
    steps["placing"] = min(placing, span - steps["md5"])
    steps["transfer"] = span - steps["md5"] - steps["placing"]
    steps["hook, other"] = max(0.0, marks["end"] - fetched)
    steps["TC's loading"] = max(0.0, bootsync_up - marks["end"])
    steps["check script"] = max(0.0, sentinel_up - bootsync_up)
    steps["shutdown"] = max(0.0, total_s - wall_s)
    return {k: round(v, 3) for k, v in steps.items()}


def _median(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return round(statistics.median(got), 3) if got else None


def summarize(boots: Sequence[BootRecord]) -> dict[str, Any]:
    """Medians per mode (times and each step) and the IPFS/HTTP ratios of the medians."""
    median: dict[str, Any] = {}
    for mode in MODES:
        mine = [b for b in boots if b.mode == mode]
        if not mine:
            continue
        median[mode] = {
            "boots": len(mine),
            "wall_s": _median([b.wall_s for b in mine]),
            "total_s": _median([b.total_s for b in mine]),
            "cpu_s": _median([b.cpu_s for b in mine]),
            "hook_s": _median([b.hook_s for b in mine]),
            "first_byte_s": _median([b.first_byte_s for b in mine]),
            "kubo_rss_kib": _median([b.kubo_rss_kib for b in mine]),
            "steps": {s: _median([b.steps.get(s) for b in mine]) for s in STEPS},
        }
    out: dict[str, Any] = {"median": median}
    for mode, key_out in (("ipfs", "ratio"), ("gateway", "ratio_gateway")):
        if mode in median and "http" in median:
            ratio: dict[str, float | None] = {}
            for key in ("wall_s", "hook_s", "total_s", "cpu_s"):
                a, b = median[mode][key], median["http"][key]
                ratio[key.removesuffix("_s")] = round(a / b, 3) if a and b else None
            out[key_out] = ratio
    out.setdefault("ratio", {})
    return out


# ------------------------------------------------------------------------------------------------ run
def _boot_once(kit: Any, codes: str, check: Path, net: Any, cfg: BootBenchConfig, log_path: Path,
               seed: Any) -> tuple[Any, list[tuple[float, str]]]:
    from tce_ipfs.errors import QemuError
    from tce_ipfs.testbed import e2e

    lines: list[tuple[float, str]] = []
    t0 = time.monotonic()

    def stream(line: str) -> None:
        text = line.strip()
        if text.startswith(("tce-ipfs:", e2e.SENTINEL)) or "Done." in text or "Booting" in text:
            lines.append((round(time.monotonic() - t0, 2), text[:200]))

    outcome = e2e.boot(kit, codes, check, net=net, timeout=cfg.timeout, memory=cfg.memory,
                       log_path=log_path, stream=stream, seed=seed)
    if not outcome.ok:
        raise QemuError(f"boot benchmark: the {kit.arch} guest did not load its extensions "
                        f"({codes.split()[0]})\n--- console (last lines) ---\n{outcome.result.tail(30)}",
                        hint=f"full console log: {log_path}")
    return outcome, lines


def bench_arch(arch: Arch, cfg: BootBenchConfig, work: Path) -> dict[str, Any]:
    """Boot ``arch``'s guest ``cfg.repeats`` times per mode, alternating; the boots and their summary."""
    from tce_ipfs.testbed import e2e, qemu, samplerepo
    from tce_ipfs.testbed.bench.mirror import http_mirror

    kit = e2e.prepare_kit(arch, work)
    repo = samplerepo.build(work / f"repo-{arch}", [kit.base.kver])
    check = e2e.check_initrd(work, samplerepo.check_script(repo), f"check-{arch}.gz")
    boots: list[BootRecord] = []
    modes = tuple(m for m in MODES if m in cfg.modes)
    with e2e.Seed(work / f"seed-{arch}", gateway="gateway" in modes) as seed, \
            http_mirror(repo.path) as (base, _served):
        cid = seed.publish(repo.path)
        mirror_port = int(base.rsplit(":", 1)[1])
        # every forward exists in every mode (the same network for all of them)
        net = qemu.user_restricted({**seed.forwards(), MIRROR_GUEST_PORT: mirror_port})
        codes = {
            "ipfs": e2e.boot_codes(cid, seed, timeout=HOOK_TIMEOUT),
            "gateway": e2e.boot_codes(cid, seed, timeout=HOOK_TIMEOUT,
                                      extra=[f"ipfs.gateway={seed.guest_gateway}"]),
            "http": f"tce=http://{qemu.GUESTFWD_ADDR}:{MIRROR_GUEST_PORT} ipfs.timeout={HOOK_TIMEOUT}",
        }
        for rnd in range(cfg.repeats):
            for mode in (modes if rnd % 2 == 0 else modes[::-1]):
                outcome, lines = _boot_once(kit, codes[mode], check, net, cfg,
                                            work / f"console-{arch}-{mode}-{rnd + 1}.log",
                                            seed if mode != "http" else None)
                f, res = outcome.fields, outcome.result
                record = BootRecord(
                    mode=mode, round=rnd + 1, wall_s=round(res.seconds, 2),
                    total_s=round(res.total_seconds, 2),
                    cpu_s=round(res.cpu_seconds, 2) if res.cpu_seconds is not None else None,
                    hook_s=_float(f, "t_total"), first_byte_s=_float(f, "t_first_byte"),
                    seed_bytes_sent=outcome.seed_bytes_sent, kubo_rss_kib=_float(f, "kubo_hwm_kb"),
                    gateway_bytes=_float(f, "bytes_ipfs_gateway"),
                    steps=steps_of(f, res.seconds, res.total_seconds),
                    marks=parse_marks(f.get("marks", "")), console=lines)
                boots.append(record)
                log.info("boot bench %s %s round %d: wall %.1f s, hook %s s, first byte %s s", arch, mode,
                         rnd + 1, record.wall_s, record.hook_s, record.first_byte_s)
    return {
        "arch": str(arch), "memory_mib": cfg.memory, "repeats": cfg.repeats,
        "extensions": len(repo.closure), "payload_bytes": repo.payload_bytes, "cid": cid,
        "hook_initrd_bytes": kit.hook_initrd.stat().st_size,
        **summarize(boots),
        "boots": [asdict(b) for b in boots],
    }


def run(cfg: BootBenchConfig) -> dict[str, Any]:
    """Run the boot benchmark for every arch in ``cfg``; write ``boot-results.json`` and ``boot.png``."""
    import json
    import tempfile

    if cfg.repeats < 1:
        raise ValueError("repeats must be at least 1")
    cfg.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"scenario": SCENARIO, "steps": list(STEPS), "arches": {}}
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-bench-boot-") as tmp:
        work = cfg.work or Path(tmp)
        for arch in cfg.arches:
            results["arches"][str(arch)] = bench_arch(arch, cfg, work / str(arch))
    (cfg.out / "boot-results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, cfg.out / "boot.png")
    return results


# ----------------------------------------------------------------------------------------------- plot
def plot(results: Mapping[str, Any], path: Path) -> Path:
    """One panel per arch: a stacked bar of the median steps per mode (HTTP left, IPFS right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arches = list(results["arches"].items())
    fig, axes = plt.subplots(1, max(len(arches), 1), figsize=(7.5 * max(len(arches), 1), 6.5), squeeze=False)
    cmap = plt.get_cmap("tab20")
    colours = [cmap(i) for i in range(20)]
    for ax, (arch, data) in zip(axes[0], arches, strict=False):
        modes = [m for m in MODES if m in data["median"]]
        for x, mode in enumerate(modes):
            bottom = 0.0
            for i, step in enumerate(STEPS):
                value = data["median"][mode]["steps"].get(step) or 0.0
                ax.bar(x, value, 0.6, bottom=bottom, color=colours[i % len(colours)],
                       label=step if x == 0 else None, edgecolor="white", linewidth=0.5)
                bottom += value
            wall, cpu = data["median"][mode]["wall_s"], data["median"][mode].get("cpu_s")
            ax.annotate(f"wall {wall:.1f} s" + (f", QEMU CPU {cpu:.1f} s" if cpu else ""), (x, bottom),
                        ha="center", va="bottom", fontsize="small")
        ax.set_xticks(range(len(modes)), [MODE_LABELS[m] for m in modes], fontsize="small")
        title = (f"{arch} guest, {data['extensions']} extensions, "
                 f"{data['payload_bytes'] / 2**20:.1f} MiB, median of {data['repeats']}")
        for mode, key in (("ipfs", "ratio"), ("gateway", "ratio_gateway")):
            r = data.get(key) or {}
            if mode in data["median"] and r:
                first_byte = data["median"][mode].get("first_byte_s")
                title += (f"\n{mode}/HTTP: wall {_fmt(r.get('wall'))} (QEMU CPU {_fmt(r.get('cpu'))}), "
                          f"hook {_fmt(r.get('hook'))}, first byte {_fmt(first_byte, ' s')}")
        ax.set_title(title, fontsize="medium")
        ax.set_ylabel("seconds from QEMU start (median per step)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize="small")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: float | None, unit: str = "x") -> str:
    return "n/a" if value is None else f"{value:.2f}{unit}"
