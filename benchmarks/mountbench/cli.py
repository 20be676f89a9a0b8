"""The options, and one run: set up, every registered step at every round-trip time,
the summary."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import parse_size

from .emulator import start_emulator, use_canfarfs_src
from .report import assemble, draw_plot, print_table, save_json
from .rig import Bench
from .seed import READ_BLOCK, check_vofs, install_vofs, set_up
from .tools import BENCHMARKS, REPO, log
from .workloads import ONLY_NAMES, STEPS, WORKLOADS

DEFAULT_JSON = BENCHMARKS / "results" / "mount.json"
DEFAULT_PLOT = REPO / "docs" / "performance-throughput.png"
DEFAULT_VOFS = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "canfarfs-bench" / "vofs"
)


def benchmark(args: argparse.Namespace, work: Path, shm: Path) -> dict[str, Any]:
    b = Bench(args, work, shm, WORKLOADS)
    bytes_note = b.isolate()
    log(f"RTT simulated with: {b.rtt_method}")
    b.emu = start_emulator(work / "emu", work / "emulator.log")
    started = time.monotonic()
    try:
        set_up(b)
        check_vofs(b)
        log(f"mountvofs: {b.vofs_status}")
        for rtt in args.rtts:
            b.set_rtt(rtt)
            log(f"== round-trip time {rtt} ms ==")
            for step in STEPS:
                if not step.measures or (args.only and step.name not in args.only):
                    continue
                t0 = time.monotonic()
                for measure in step.measures:
                    measure(b, rtt)
                log(f"  ({step.name} took {time.monotonic() - t0:.0f} s)")
                # saved after every step: a run that is stopped keeps what it measured
                save_json(args.json, assemble(b, bytes_note, started, partial=True))
        b.emu.set_latency(0)
    except (KeyboardInterrupt, SystemExit) as exc:
        b.interrupted = f"stopped by {type(exc).__name__} {exc}".strip()
        log(f"{b.interrupted}; reporting what was measured")
    finally:
        b.emu.stop()
        if b.netns:
            b.netns.delete()
    return assemble(b, bytes_note, started, partial=bool(b.interrupted))


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--size", type=parse_size, default=parse_size("1G"), help="big file size (default 1G)"
    )
    p.add_argument("--files", type=int, default=1000, help="small files of 4 KiB (default 1000)")
    p.add_argument(
        "--entries",
        type=int,
        default=None,
        help="entries in the listed directory (default 10 × --files)",
    )
    p.add_argument(
        "--reads",
        type=int,
        default=None,
        help="random 64 KiB reads (default 2000; fewer for files < 256 MiB)",
    )
    p.add_argument("--rtts", default="0,20", help="round-trip times in ms (0,20)")
    p.add_argument("--runs", type=int, default=3, help="runs per measurement (3)")
    p.add_argument(
        "--slow-runs",
        type=int,
        default=1,
        help="runs of the big/random/small-file workloads at RTT > 0 (1)",
    )
    p.add_argument(
        "--vcp-sample",
        type=int,
        default=None,
        help="small files copied by the vcp loop, rate extrapolated "
        "(default: a tenth of --files, 3 to 30)",
    )
    p.add_argument(
        "--timeout", type=float, default=600, help="seconds any one command may take (600)"
    )
    p.add_argument(
        "--only",
        type=lambda s: set(s.split(",")),
        default=None,
        help=f"run some workloads: {','.join(ONLY_NAMES)}",
    )
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    p.add_argument("--tmp", type=Path, default=None, help="scratch directory (disk)")
    p.add_argument(
        "--vofs-target",
        type=Path,
        default=DEFAULT_VOFS,
        help=f"pip --target directory holding vofs (default {DEFAULT_VOFS})",
    )
    p.add_argument(
        "--install-vofs",
        action="store_true",
        help="pip install vofs and six into --vofs-target first",
    )
    p.add_argument("--no-vofs", action="store_true", help="leave mountvofs out")
    p.add_argument(
        "--vofs-size",
        type=parse_size,
        default=parse_size("256M"),
        help="file size for mountvofs's big-file rows (256M; it is slow)",
    )
    p.add_argument(
        "--vofs-files", type=int, default=100, help="small files for mountvofs's row (100)"
    )
    p.add_argument(
        "--vofs-runs", type=int, default=1, help="runs of each mountvofs measurement (1)"
    )
    p.add_argument(
        "--peer-timeout", type=float, default=60, help="seconds a mountvofs ls -l may take (60)"
    )
    p.add_argument(
        "--canfarfs-src",
        type=Path,
        default=None,
        help="run the emulator and the mount from this source tree "
        "(PYTHONPATH), e.g. a `git archive` of a commit",
    )
    p.add_argument("--no-vcp", action="store_true", help="leave vcp/vls out")
    p.add_argument(
        "--no-netns", action="store_true", help="stay in this network namespace (no byte counts)"
    )
    p.add_argument(
        "--latency-knob",
        action="store_true",
        help="use the emulator's latency knob even where netem works",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    p.add_argument("--verbose", action="store_true")
    p.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="measure nothing: print the table and draw the plot of a JSON file this script wrote",
    )
    return p


def main(argv: list[str] | None = None, description: str = __doc__ or "") -> int:
    """The benchmark; ``description``: the script's docstring (its first paragraph is
    the ``--help`` description)."""
    ap = parser(description.split("\n\n")[0])
    args = ap.parse_args(argv)
    if args.from_json is not None:
        old = json.loads(args.from_json.read_text())
        print_table(old)
        print(f"plot: {draw_plot(old, args.plot)}")
        return 0
    use_canfarfs_src(args.canfarfs_src)
    # a plain `kill` unwinds like Ctrl-C: mounts unmounted, emulator stopped, namespace gone
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.rtts = [int(x) for x in args.rtts.split(",") if x.strip()]
    if args.entries is None:
        args.entries = 10 * args.files
    if args.vcp_sample is None:
        args.vcp_sample = max(3, min(30, args.files // 10))
    if args.reads is None:
        args.reads = max(50, min(2000, args.size // (128 * 1024)))
    if args.size < 2 * READ_BLOCK or args.runs < 1 or args.slow_runs < 1 or args.files < 1:
        ap.error("--size ≥ 128K, --runs/--slow-runs/--files ≥ 1")
    for tool in ("curl", "cat", "cp", "ls", "xargs"):
        if shutil.which(tool) is None:
            ap.error(f"{tool} is required")
    if not Path("/dev/fuse").exists():
        ap.error("/dev/fuse is required")
    if args.install_vofs:
        install_vofs(args.vofs_target)

    shm_parent = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with (
        tempfile.TemporaryDirectory(prefix="bench-mount-", dir=args.tmp) as tmp,
        tempfile.TemporaryDirectory(prefix="bench-mount-src-", dir=shm_parent) as shm,
    ):
        result = benchmark(args, Path(tmp), Path(shm))
    result["table"] = print_table(result)
    print(f"RTT: {result['rtt_method']}")
    print(f"bytes: {result['bytes_counted']}")
    print(f"mountvofs: {result['mountvofs']}")
    save_json(args.json, result)
    print(f"results written to {args.json}")
    if result["partial"]:
        print(f"INCOMPLETE: {result['interrupted']}; no plot drawn")
        return 143
    print(f"plot: {draw_plot(result, args.plot)}")
    print(f"wall time {result['wall_seconds']:.0f} s")
    missed = [k for k, r in result["rows"].items() if r["result"] == "MISS"]
    return 1 if args.strict and missed else 0
