#!/usr/bin/env python3
"""Soak: minutes of mixed work on a real mount, with the daemon's memory and open files
sampled (issue 7: "both stay flat, with no leak").

One command. It mounts the bundled local platform (``canfarfs mount --foreground
--local``; the emulator then runs inside the daemon, so its memory is counted too) and,
for ``--minutes``, keeps busy:

* one storage worker per service (arc, vault): create, overwrite at an offset, append,
  read back and compare, rename, delete, ``ls`` compared with what it wrote, mkdir and
  rmdir, over a working set of up to 40 files (sizes 0–256 KiB, some of 4 MiB);
* a sessions worker: writes a headless spec, reads ``.ids``, waits for ``status``,
  reads ``info``, ``events`` and ``logs`` (compared with what the command printed),
  ``rmdir`` of the session, ``rm`` of the spec;
* a lister: ``ls -l`` of the homes and of ``sessions/`` and its indexes, ``df``.

Every ``--interval`` seconds it samples the daemon's ``VmRSS`` and ``VmHWM``
(/proc/PID/status), its open files (/proc/PID/fd) and threads. When the time is up the
workers stop and delete what they wrote; after ``--settle`` seconds idle (beyond the HTTP
keep-alive expiry) and one request, a last sample is taken, then the mount is unmounted.

Flat means (``--warmup`` seconds excluded): the median RSS of the last third of the
samples is within ``--rss-slack`` MB of the median of the first third; the median
open-file count likewise within ``--fd-slack``; and once the working set is deleted and
the mount has settled, the daemon holds no file it did not hold before the work (idle
keep-alive sockets, bounded by the HTTP pool, aside).

Prints a table and the verdict, writes JSON (default ``benchmarks/results/soak.json``).
Exits 0 once it has measured (``--strict``: 1 if not flat or any operation failed).

    python benchmarks/soak.py [--minutes 10] [--interval 10]
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import is_mounted

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_JSON = HERE / "results" / "soak.json"
USER = "alice"
IMAGE = "images.canfar.net/skaha/terminal:1.1.1"
HOMES = {"arc": f"arc/home/{USER}", "vault": f"vault/{USER}"}
MAX_FILES = 40
#: The daemon's HTTP pool size (canfarfs.net.make_client).
POOL_CONNECTIONS = 32
POOL = random.Random(7).randbytes(8 << 20)  # test data, not secrets


@dataclass
class Sample:
    t: float
    phase: str
    rss_kb: int
    hwm_kb: int
    fds: int
    threads: int
    ops: int
    #: What the open files are (kept for the samples outside the run).
    fd_kinds: dict[str, int] | None = None

    @staticmethod
    def take(pid: int, t: float, phase: str, ops: int, kinds: bool = False) -> Sample:
        fields: dict[str, int] = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    fields[key] = int(value.split()[0])
        return Sample(
            round(t, 1),
            phase,
            fields["VmRSS"],
            fields["VmHWM"],
            len(os.listdir(f"/proc/{pid}/fd")),
            fields["Threads"],
            ops,
            fd_kinds(pid) if kinds else None,
        )


def fd_kinds(pid: int) -> dict[str, int]:
    """Open files by kind: socket, pipe, anon_inode:[eventpoll], /dev/fuse, or for files
    the directory they are in, relative to the scratch directory."""
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/") and not target.startswith("/dev/"):
            target = "file " + str(Path(target).parent)
        kinds[target.split(":[")[0] if ":[" in target and "anon" not in target else target] += 1
    return dict(sorted(kinds.items()))


@dataclass
class Tally:
    """Operations done and failures seen, shared by the workers."""

    ops: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    start: float = field(default_factory=time.monotonic)

    def done(self, op: str) -> None:
        with self.lock:
            self.ops[op] += 1

    def failed(self, worker: str, op: str, exc: BaseException) -> None:
        with self.lock:
            self.error_count += 1
            if len(self.errors) < 50:
                self.errors.append(f"{time.monotonic() - self.start:.0f} s {worker} {op}: {exc!r}")

    def total(self) -> int:
        with self.lock:
            return sum(self.ops.values())


def run_worker(
    name: str,
    step: Callable[[], str | None],
    stop: threading.Event,
    tally: Tally,
    pause: float = 0.0,
) -> None:
    while not stop.is_set():
        op = "?"
        try:
            op = step() or "?"
            tally.done(op)
        except Exception as exc:  # a soak counts failures and goes on
            tally.failed(name, op, exc)
            time.sleep(0.5)
        if pause:
            stop.wait(pause)


class StorageWorker:
    """Random file operations in one directory, checked against what was written."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.files: dict[str, bytes] = {}
        self.counter = 0
        self.op = "?"
        root.mkdir(parents=True, exist_ok=True)

    def data(self) -> bytes:
        big = self.rng.random() < 0.03
        size = (
            4 << 20
            if big
            else self.rng.choice([0, 1, 100, 4096, 65_536, 262_144, self.rng.randrange(262_144)])
        )
        start = self.rng.randrange(len(POOL) - size + 1)
        return POOL[start : start + size]

    def new_name(self) -> str:
        self.counter += 1
        return f"f{self.counter}.bin"

    def step(self) -> str:
        ops: list[tuple[str, float]] = [
            ("create", 3),
            ("read", 4),
            ("overwrite", 2),
            ("append", 1),
            ("rename", 1),
            ("delete", 1),
            ("ls", 2),
            ("dir", 0.3),
        ]
        if not self.files:
            ops = [("create", 1)]
        op = self.rng.choices([o for o, _ in ops], [w for _, w in ops])[0]
        if len(self.files) >= MAX_FILES and op == "create":
            op = "delete"
        getattr(self, f"do_{op}")()
        return op

    def pick(self) -> str:
        return self.rng.choice(sorted(self.files))

    def do_create(self) -> None:
        name, data = self.new_name(), self.data()
        (self.root / name).write_bytes(data)
        self.files[name] = data

    def do_read(self) -> None:
        name = self.pick()
        got = (self.root / name).read_bytes()
        if got != self.files[name]:
            raise AssertionError(
                f"{name}: {len(got)} bytes read, {len(self.files[name])} "
                "written, or different bytes"
            )

    def do_overwrite(self) -> None:
        name = self.pick()
        old = self.files[name]
        offset = self.rng.randrange(len(old) + 1)
        patch = self.data()[:65_536]
        with open(self.root / name, "r+b") as f:
            f.seek(offset)
            f.write(patch)
        new = bytearray(old)
        new[offset : offset + len(patch)] = patch
        self.files[name] = bytes(new)

    def do_append(self) -> None:
        name = self.pick()
        extra = self.data()[:32_768]
        with open(self.root / name, "ab") as f:
            f.write(extra)
        self.files[name] += extra

    def do_rename(self) -> None:
        name, new = self.pick(), self.new_name()
        os.rename(self.root / name, self.root / new)
        self.files[new] = self.files.pop(name)

    def do_delete(self) -> None:
        name = self.pick()
        os.unlink(self.root / name)
        del self.files[name]

    def do_ls(self) -> None:
        listed = {n for n in os.listdir(self.root) if n != "sub"}
        if listed != set(self.files):
            raise AssertionError(f"ls shows {sorted(listed ^ set(self.files))[:5]} wrongly")
        for n in self.rng.sample(sorted(self.files), min(5, len(self.files))):
            size = (self.root / n).stat().st_size
            if size != len(self.files[n]):
                raise AssertionError(f"{n}: size {size}, {len(self.files[n])} written")

    def cleanup(self) -> None:
        """Delete the working set (so the read cache lets go of its files)."""
        for name in sorted(self.files):
            os.unlink(self.root / name)
        self.files.clear()
        self.root.rmdir()

    def do_dir(self) -> None:
        sub = self.root / "sub"
        sub.mkdir()
        (sub / "x.txt").write_bytes(b"x")
        os.unlink(sub / "x.txt")
        sub.rmdir()


class SessionsWorker:
    """Launch a headless session from a spec, read it, destroy it, remove the spec."""

    def __init__(self, sessions: Path) -> None:
        self.sessions = sessions
        self.n = 0

    def step(self) -> str:
        self.n += 1
        name = f"soak-{self.n}"
        spec = self.sessions / f"{name}.yaml"
        spec.write_text(
            f"name: {name}\nimage: {IMAGE}\nkind: headless\ncmd: echo\nargs: [soak, '{self.n}']\n"
        )
        sid = (self.sessions / f"{name}.yaml.ids").read_text().split()[0]
        deadline = time.monotonic() + 60
        while (status := (self.sessions / sid / "status").read_text().strip()) not in (
            "Completed",
            "Failed",
            "Succeeded",
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sid} still {status} after 60 s")
            time.sleep(0.2)
        if status == "Failed":
            raise AssertionError(f"{sid} failed")
        info = json.loads((self.sessions / sid / "info").read_text())
        if info["id"] != sid or info["name"] != name:
            raise AssertionError(f"info of {sid}: {info['id']} {info['name']}")
        (self.sessions / sid / "events").read_bytes()
        logs = (self.sessions / sid / "logs").read_text()
        if logs != f"soak {self.n}\n":
            raise AssertionError(f"logs of {sid}: {logs!r}")
        os.rmdir(self.sessions / sid)
        spec.unlink()
        if sid in os.listdir(self.sessions):
            raise AssertionError(f"{sid} still listed after rmdir")
        return "session"


class Lister:
    def __init__(self, mnt: Path) -> None:
        self.mnt = mnt
        self.turn = 0

    def step(self) -> str:
        self.turn += 1
        for d in (
            self.mnt / HOMES["arc"],
            self.mnt / HOMES["vault"],
            self.mnt / "sessions",
            self.mnt / "sessions" / "by-status",
            self.mnt / "sessions" / "by-kind",
        ):
            for entry in os.scandir(d):
                with contextlib.suppress(FileNotFoundError):  # workers delete and rename
                    entry.stat()
        os.statvfs(self.mnt)
        if self.turn % 10 == 0:
            json.loads((self.mnt / "sessions" / "images").read_text())
        return "ls"


def third_medians(values: list[float]) -> tuple[float, float]:
    n = max(1, len(values) // 3)
    return statistics.median(values[:n]), statistics.median(values[-n:])


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def sockets(s: Sample) -> int:
    return (s.fd_kinds or {}).get("socket", 0)


def verdict(samples: list[Sample], args: argparse.Namespace, tally: Tally) -> dict[str, Any]:
    """RSS flat: the last third's median within ``rss_slack`` MB of the first third's.
    Open files flat: no growth during the run (medians within ``fd_slack``), and after
    the working set is deleted and the mount has settled, every open file that is not a
    socket is one the daemon had before any work; the sockets left are idle keep-alive
    connections (both ends are in this process), which the pool bounds."""
    baseline = next(s for s in samples if s.phase == "baseline")
    final = next(s for s in samples if s.phase == "settled")
    run = [s for s in samples if s.phase == "run" and s.t >= args.warmup]
    if len(run) < 3:
        run = [s for s in samples if s.phase == "run"]
    rss = [s.rss_kb / 1024 for s in run]
    first, last = third_medians(rss) if rss else (0.0, 0.0)
    fd_first, fd_last = third_medians([float(s.fds) for s in run]) if run else (0.0, 0.0)
    files_before = baseline.fds - sockets(baseline)
    files_after = final.fds - sockets(final)
    rss_ok = last - first <= args.rss_slack
    fd_ok = (
        fd_last - fd_first <= args.fd_slack
        and files_after <= files_before
        and sockets(final) <= sockets(baseline) + 2 * POOL_CONNECTIONS
    )
    return {
        "rss_first_third_median_mb": round(first, 1),
        "rss_last_third_median_mb": round(last, 1),
        "rss_delta_mb": round(last - first, 1),
        "rss_slope_mb_per_min": round(slope_per_minute([(s.t, s.rss_kb / 1024) for s in run]), 2),
        "rss_max_mb": round(max(s.rss_kb for s in samples) / 1024, 1),
        "hwm_mb": round(max(s.hwm_kb for s in samples) / 1024, 1),
        "fd_baseline": baseline.fds,
        "fd_first_third_median": fd_first,
        "fd_last_third_median": fd_last,
        "fd_max": max(s.fds for s in samples),
        "fd_settled": final.fds,
        "files_baseline": files_before,
        "files_settled": files_after,
        "sockets_baseline": sockets(baseline),
        "sockets_settled": sockets(final),
        "rss_flat": rss_ok,
        "fds_flat": fd_ok,
        "errors": tally.error_count,
        "flat": rss_ok and fd_ok,
        "ok": rss_ok and fd_ok and tally.error_count == 0,
        "samples_used": len(run),
    }


def print_table(samples: list[Sample]) -> None:
    print(
        f"| {'t (s)':>7} | {'phase':<8} | {'RSS MB':>7} | {'HWM MB':>7} | {'fds':>4} | "
        f"{'thr':>4} | {'ops':>7} |"
    )
    print(f"|{'-' * 9}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 6}|{'-' * 6}|{'-' * 9}|")
    for s in samples:
        print(
            f"| {s.t:>7.1f} | {s.phase:<8} | {s.rss_kb / 1024:>7.1f} | "
            f"{s.hwm_kb / 1024:>7.1f} | {s.fds:>4} | {s.threads:>4} | {s.ops:>7} |"
        )


def soak(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    mnt, data, cache = scratch / "mnt", scratch / "data", scratch / "cache"
    mnt.mkdir()
    log_path = scratch / "daemon.log"
    env = dict(
        os.environ,
        CANFARFS_USER=USER,
        CANFARFS_SKAHA_PENDING_SECONDS="0.3",
        XDG_STATE_HOME=str(scratch / "state"),
    )
    env.update(item.split("=", 1) for item in args.daemon_env)
    cmd = [
        sys.executable,
        "-m",
        "canfarfs",
        "mount",
        str(mnt),
        "--foreground",
        "--local",
        str(data),
        "--cache-dir",
        str(cache),
        "--meta-ttl",
        "1",
    ]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    tally = Tally()
    samples: list[Sample] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        deadline = time.monotonic() + 60
        while not is_mounted(mnt):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the mount did not come up:\n{log_path.read_text()}")
            time.sleep(0.05)
        os.listdir(mnt / "sessions")  # the services answer
        time.sleep(1)
        start = time.monotonic()
        tally.start = start
        samples.append(Sample.take(proc.pid, 0.0, "baseline", 0, kinds=True))
        storage = [
            StorageWorker(mnt / home / "soak", seed) for seed, home in enumerate(HOMES.values())
        ]
        workers: list[tuple[str, Callable[[], str | None], float]] = [
            (f"storage-{svc}", w.step, 0.0) for svc, w in zip(HOMES, storage, strict=True)
        ]
        workers += [
            ("sessions", SessionsWorker(mnt / "sessions").step, 0.2),
            ("lister", Lister(mnt).step, 0.5),
        ]
        for name, step, pause in workers:
            t = threading.Thread(
                target=run_worker, args=(name, step, stop, tally, pause), name=name, daemon=True
            )
            t.start()
            threads.append(t)
        end = start + args.minutes * 60
        next_at = start + args.interval
        while (now := time.monotonic()) < end:
            time.sleep(max(0.0, min(next_at, end) - now))
            if time.monotonic() >= next_at:
                samples.append(
                    Sample.take(proc.pid, time.monotonic() - start, "run", tally.total())
                )
                next_at += args.interval
                if args.progress:
                    s = samples[-1]
                    print(
                        f"  {s.t:6.0f} s  RSS {s.rss_kb / 1024:6.1f} MB  fds {s.fds:3d}  "
                        f"ops {s.ops}",
                        flush=True,
                    )
        stop.set()
        for t in threads:
            t.join(120)
        for w in storage:
            w.cleanup()
        samples.append(
            Sample.take(proc.pid, time.monotonic() - start, "stopped", tally.total(), kinds=True)
        )
        time.sleep(args.settle)
        os.listdir(mnt / HOMES["arc"])  # one request: idle pooled connections are reaped
        os.listdir(mnt / "sessions")
        time.sleep(1)
        samples.append(
            Sample.take(proc.pid, time.monotonic() - start, "settled", tally.total(), kinds=True)
        )
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        if is_mounted(mnt):
            r = subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, check=False)
            if r.returncode != 0:
                time.sleep(2)
                subprocess.run(["fusermount3", "-uz", str(mnt)], check=False)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log_text = log_path.read_text(errors="replace")
    result: dict[str, Any] = {
        "parameters": {
            k: getattr(args, k)
            for k in (
                "minutes",
                "interval",
                "warmup",
                "settle",
                "rss_slack",
                "fd_slack",
                "daemon_env",
            )
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "duration_s": round(samples[-1].t, 1),
        "ops": dict(sorted(tally.ops.items())),
        "ops_total": tally.total(),
        "errors": tally.errors,
        "error_count": tally.error_count,
        "daemon_exit": proc.returncode,
        "daemon_tracebacks": log_text.count("Traceback"),
        "samples": [s.__dict__ for s in samples],
        "verdict": verdict(samples, args, tally),
    }
    result["verdict"]["ok"] = (
        result["verdict"]["ok"] and proc.returncode == 0 and "Traceback" not in log_text
    )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long to work (10)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    p.add_argument(
        "--warmup", type=float, default=60.0, help="seconds of samples left out of the verdict (60)"
    )
    p.add_argument(
        "--settle",
        type=float,
        default=35.0,
        help="idle seconds before the last sample (35: past keep-alive expiry)",
    )
    p.add_argument(
        "--rss-slack",
        type=float,
        default=16.0,
        help="MB the last third's median RSS may exceed the first third's (16)",
    )
    p.add_argument(
        "--fd-slack",
        type=float,
        default=8,
        help="open files the last third's median may exceed the first's by (8)",
    )
    p.add_argument(
        "--daemon-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the daemon, e.g. MALLOC_MMAP_THRESHOLD_=131072 "
        "to tell allocator retention from live growth (repeatable)",
    )
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    p.add_argument("--tmp", type=Path, default=None, help="scratch parent directory")
    p.add_argument(
        "--strict", action="store_true", help="exit 1 if not flat or an operation failed"
    )
    p.add_argument("--progress", action="store_true", help="print each sample as taken")
    args = p.parse_args(argv)
    if not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None:
        print("soak: needs /dev/fuse and fusermount3", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="canfarfs-soak-", dir=args.tmp))
    try:
        result = soak(args, scratch)
    except Exception:
        traceback.print_exc()
        log = scratch / "daemon.log"
        if log.exists():
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_table([Sample(**s) for s in result["samples"]])
    v = result["verdict"]
    print(
        f"\n{result['duration_s']:.0f} s, {result['ops_total']} operations "
        f"{result['ops']}, {result['error_count']} failed"
    )
    print(
        f"RSS: first-third median {v['rss_first_third_median_mb']} MB, last-third "
        f"{v['rss_last_third_median_mb']} MB (delta {v['rss_delta_mb']:+} MB, slack "
        f"{args.rss_slack}; slope {v['rss_slope_mb_per_min']:+} MB/min), peak "
        f"{v['hwm_mb']} MB → {'flat' if v['rss_flat'] else 'NOT FLAT'}"
    )
    print(
        f"open files: {v['fd_baseline']} before work; run medians "
        f"{v['fd_first_third_median']:g} → {v['fd_last_third_median']:g} (slack "
        f"{args.fd_slack}), max {v['fd_max']}; after cleanup and settling "
        f"{v['files_settled']} files (before: {v['files_baseline']}) and "
        f"{v['sockets_settled']} sockets (before: {v['sockets_baseline']}) → "
        f"{'flat' if v['fds_flat'] else 'NOT FLAT'}"
    )
    for s in result["samples"]:
        if s["fd_kinds"]:
            print(f"open files {s['phase']}: {s['fd_kinds']}")
    for e in result["errors"][:10]:
        print(f"  error: {e}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"soak: {'OK' if v['ok'] else 'NOT OK'}; JSON in {args.json}")
    return 1 if args.strict and not v["ok"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(errno.EINTR)
