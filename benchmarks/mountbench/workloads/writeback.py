"""Write-back and warm-up (issue 15): many small files in with ``--writeback`` (to the
copy's last ``close()``, then to ``canfarfs sync``), ``tar -xf`` of a 10×--files tree,
and ``canfarfs warmup`` of a directory against a sequential ``cat``.

Until ``canfarfs mount --writeback`` and ``canfarfs warmup`` exist, these rows record
why they could not be measured (a failure, not a crash).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from defusedxml import ElementTree as ET

from ..emulator import canfarfs_env
from ..rig import Bench, Mount
from ..seed import SEED
from ..tools import USER, Failed, curl, curl_batch, look_up, on_mount, run

WRITEBACK = ("--writeback",)
DURABLE_TODAY = 35.0  # files/s: issue 15's figure for 1,000 × 4 KiB at 20 ms, close durable
VOS = "{http://www.ivoa.net/xml/VOSpace/v2.0}"
MD5_PROP = "ivo://ivoa.net/vospace/core#MD5"
LENGTH_PROP = "ivo://ivoa.net/vospace/core#length"
TREE_PER_DIR = 100  # files per directory of the tar's tree

# -- what the installed canfarfs can do -----------------------------------------------

_features: dict[str, str] = {}


def require(feature: str) -> None:
    """Fail (recorded against the row) when canfarfs lacks ``feature``: "writeback"
    (``canfarfs mount --writeback``), "warmup" or "sync" (the commands)."""
    if feature not in _features:
        cmd = [sys.executable, "-m", "canfarfs"]
        cmd += ["mount", "--help"] if feature == "writeback" else [feature, "--help"]
        r = subprocess.run(
            cmd, capture_output=True, text=True, env=canfarfs_env(), timeout=60, check=False
        )
        if r.returncode != 0:
            _features[feature] = f"canfarfs has no `{feature}` command yet (issue 15)"
        elif feature == "writeback" and "--writeback" not in r.stdout:
            _features[feature] = "canfarfs mount has no --writeback option yet (issue 15)"
        else:
            _features[feature] = ""
    if _features[feature]:
        raise Failed(_features[feature])


def canfarfs_cli(m: Mount, *args: str, timeout: float) -> float:
    """``canfarfs ARGS…`` as a user runs it beside the mount ``m`` (same user and state
    directory); its wall time, Python's start-up included."""
    env = canfarfs_env(CANFARFS_USER=USER, XDG_STATE_HOME=str(m.path.parent / "state"))
    return run(
        [sys.executable, "-m", "canfarfs", *args], timeout=timeout, env=env, cwd=m.path.parent
    )


# -- what the server holds ----------------------------------------------------------------


def server_files(b: Bench, directory: str) -> dict[str, tuple[int, str | None]]:
    """{name: (length, MD5)} of the data nodes in an arc directory (one listing)."""
    assert b.emu is not None
    status, _, data = b.emu.request("GET", b.emu.node_path("arc", f"home/{USER}/{directory}"))
    if status != 200:
        raise Failed(f"listing {directory} on the server: HTTP {status}")
    out: dict[str, tuple[int, str | None]] = {}
    root = ET.fromstring(data)
    nodes = root.find(f"{VOS}nodes")
    for node in nodes if nodes is not None else []:
        props = {p.get("uri"): (p.text or "") for p in node.iter(f"{VOS}property") if p.get("uri")}
        if LENGTH_PROP not in props:
            continue  # a container
        name = (node.get("uri") or "").rsplit("/", 1)[-1]
        out[name] = (int(props[LENGTH_PROP] or 0), props.get(MD5_PROP) or None)
    return out


def check_on_server(b: Bench, directory: str, want: dict[str, tuple[int, str]], what: str) -> None:
    """Every file of ``want`` on the server under ``directory`` with its length and MD5."""
    by_dir: dict[str, dict[str, tuple[int, str]]] = {}
    for rel, props in want.items():
        sub, _, name = rel.rpartition("/")
        by_dir.setdefault(sub, {})[name] = props
    subs = sorted(by_dir)
    with ThreadPoolExecutor(8) as pool:
        held = dict(
            zip(
                subs,
                pool.map(lambda s: server_files(b, f"{directory}/{s}".rstrip("/")), subs),
                strict=True,
            )
        )
    bad = [
        f"{sub}/{name}".lstrip("/")
        for sub in subs
        for name, props in by_dir[sub].items()
        if held[sub].get(name) != props
    ]
    if bad:
        first = bad[0]
        sub, _, name = first.rpartition("/")
        raise Failed(
            f"{what}: {len(bad)} of {len(want)} files missing or wrong on the server "
            f"(e.g. {first}: {held[sub].get(name)}, wanted {want[first]})"
        )


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324 - the protocol's checksum


def stats_by_method(b: Bench) -> dict[str, int]:
    """Requests by HTTP method since the last ``counting()`` reset."""
    assert b.emu is not None
    _, _, data = b.emu.request("GET", "/_emulator/stats")
    got: dict[str, int] = json.loads(data).get("by_method", {})
    return got


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CPU:
    """CPU seconds the daemon and the emulator spend from here to ``seconds()``: where
    a phase's time goes on a machine whose cores they share."""

    def __init__(self, b: Bench, m: Mount) -> None:
        assert b.emu is not None
        self.pids = {"daemon_cpu_s": m.proc.pid, "emulator_cpu_s": b.emu.proc.pid}
        self.start = {k: cpu_s(pid) for k, pid in self.pids.items()}

    def seconds(self) -> dict[str, float]:
        return {k: round(cpu_s(pid) - self.start[k], 2) for k, pid in self.pids.items()}


def as_failed(exc: BaseException) -> Failed:
    return exc if isinstance(exc, Failed) else Failed(f"{type(exc).__name__}: {exc}")


# -- 1,000 small files with --writeback, then canfarfs sync -------------------------------


def w_writeback_small(b: Bench, rtt: int) -> None:
    """``cp -r`` of the small files into arc on a ``--writeback`` mount, timed to its
    return (every ``close()`` returned: ``writeback_small_files``) and on to the return
    of ``canfarfs sync`` (``writeback_sync``), against 8 curl PUTs at a time, one curl
    process each (``curl -Z --parallel-max 8``, one process, beside it as information).
    Today's durable rate is the canfarfs copy-in of ``small_files_arc`` in this run."""
    assert b.emu is not None
    emu = b.emu
    k_copy, k_sync = "writeback_small_files", "writeback_sync"
    names = sorted(p.name for p in b.small_src.iterdir())
    n = len(names)
    want = {nm: (4096, md5_of(b.small_src / nm)) for nm in names}

    def fs(tag: str) -> None:
        stage = "copy"
        try:
            require("writeback")
            require("sync")
            with b.mounted("canfarfs", "arc", WRITEBACK) as (m, home):
                look_up(home / "bench")
                with b.counting() as c:
                    cpu = CPU(b, m)
                    t0 = time.perf_counter()
                    run(
                        ["cp", "-r", str(b.small_src), str(home / "bench" / tag)],
                        timeout=b.args.timeout,
                    )
                    t_copy = time.perf_counter() - t0
                    req_copy = emu.requests_seen()
                    cpu_copy = cpu.seconds()
                    b.record(
                        k_copy,
                        rtt,
                        "canfarfs",
                        n / t_copy,
                        files=n,
                        seconds=round(t_copy, 3),
                        requests=req_copy,
                        **cpu_copy,
                    )
                    stage = "sync"
                    t_sync = canfarfs_cli(m, "sync", str(m.path), timeout=b.args.timeout)
                    t_all = time.perf_counter() - t0
                    by_method = stats_by_method(b)
                check_on_server(b, f"bench/{tag}", want, "after canfarfs sync")
                b.record(
                    k_sync,
                    rtt,
                    "canfarfs",
                    t_all,
                    files=n,
                    copy_s=round(t_copy, 3),
                    sync_s=round(t_sync, 3),
                    by_method=by_method,
                    **c,
                )
        except Exception as exc:  # recorded against the rows it stopped
            failed = as_failed(exc)
            if stage == "copy":
                b.fail(k_copy, rtt, "canfarfs", failed)
            b.fail(k_sync, rtt, "canfarfs", failed)

    def by_curl(tag: str) -> None:
        base = f"{emu.url}/arc/files/home/{USER}/bench/{tag}"
        emu.mkdir("arc", f"home/{USER}/bench/{tag}")

        def put(nm: str) -> int:
            return curl(f"{base}/{nm}", upload=b.small_src / nm, timeout=b.args.timeout).status

        with b.counting() as c:
            t0 = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(put, names))
            sec = time.perf_counter() - t0
        if any(code != 201 for code in codes):
            raise Failed(f"curl PUT: {sum(code != 201 for code in codes)} of {n} not 201")
        # the same PUTs by one curl process, 8 at a time on kept-alive connections
        emu.mkdir("arc", f"home/{USER}/bench/{tag}-Z")
        ups = [
            {"url": f"{base}-Z/{nm}", "upload-file": str(b.small_src / nm), "output": "/dev/null"}
            for nm in names
        ]
        one = curl_batch(ups, b.work, parallel=8, timeout=b.args.timeout)
        b.record(k_sync, rtt, "curl", sec, files=n, curl_Z8_one_process_s=round(one, 3), **c)

    for i in range(b.runs_for(rtt, slow=True)):
        b.measure(
            k_copy,
            rtt,
            i,
            "canfarfs",
            partial(fs, f"wb-{rtt}-{i}"),
            label="writeback_small_files + writeback_sync",
        )
        b.measure(k_sync, rtt, i, "curl", partial(by_curl, f"wb-curl-{rtt}-{i}"))
    # today's durable rate: the copy-in of small_files_arc (cp -r until on the server)
    small = b.results.get("small_files_arc", {}).get(str(rtt), {}).get("canfarfs", {})
    for e in small.get("extra", []):
        if e.get("in_s") and e.get("files"):
            b.record(
                k_copy,
                rtt,
                "durable",
                e["files"] / e["in_s"],
                source="small_files_arc: canfarfs cp -r in, close durable",
            )


def judge_writeback_small(
    rtt: int, med: dict[str, float | None], ratios: dict[str, float], cells: dict[str, Any]
) -> tuple[str, str]:
    """≥ 20× today's durable rate at 20 ms: the small_files_arc copy-in of this run, or
    issue 15's 35 files/s when that row was not run (its ratio is then added here)."""
    c = med.get("canfarfs")
    if c is None:
        return "n/a", "canfarfs not measured (see errors)"
    if "durable" in ratios:
        why = f"{ratios['durable']:.1f}× durable close ({med['durable']:.0f} files/s, this run)"
    else:
        ratios["durable"] = c / DURABLE_TODAY
        why = f"{ratios['durable']:.1f}× issue 15's {DURABLE_TODAY:.0f} files/s (small not run)"
    if rtt == 0:
        return "info", why + "; goal is at 20 ms"
    return ("PASS" if ratios["durable"] >= 20 else "MISS"), why


def judge_writeback_sync(
    rtt: int, med: dict[str, float | None], ratios: dict[str, float], cells: dict[str, Any]
) -> tuple[str, str]:
    """Copy + ``canfarfs sync`` ≤ 1.2× 8 parallel curl PUTs at 20 ms."""
    if med.get("canfarfs") is None:
        return "n/a", "canfarfs not measured (see errors)"
    if "curl" not in ratios:
        return "n/a", "no curl figure"
    extra = cells["canfarfs"]["extra"]
    sync = sorted(e["sync_s"] for e in extra if "sync_s" in e)
    why = f"{ratios['curl']:.2f}× 8 curl PUTs"
    if sync:
        why += f"; sync {sync[len(sync) // 2]:.2f} s of it"
    if rtt == 0:
        return "info", why + "; goal is at 20 ms"
    return ("PASS" if ratios["curl"] <= 1.2 else "MISS"), why


# -- tar -xf of a 10×--files tree ------------------------------------------------------------

_trees: dict[Path, dict[str, tuple[int, str]]] = {}


def tree_tarball(b: Bench) -> tuple[Path, dict[str, tuple[int, str]]]:
    """A tarball of a source-like tree (made once): 10 × --files files of 256 B–8 KiB,
    100 to a directory; and {"dNNN/name": (length, MD5)}."""
    tar = b.shm / "tree.tar"
    if tar in _trees:
        return tar, _trees[tar]
    total = 10 * b.args.files
    dirs = max(1, round(total / TREE_PER_DIR))
    src = b.shm / "tree-src"
    rng = random.Random(SEED + 15)
    want: dict[str, tuple[int, str]] = {}
    for d in range(dirs):
        (src / f"d{d:03d}").mkdir(parents=True)
    for i in range(total):
        rel = f"d{i % dirs:03d}/f{i:05d}.c"
        data = rng.randbytes(rng.randint(256, 8192))
        (src / rel).write_bytes(data)
        want[rel] = (len(data), hashlib.md5(data).hexdigest())  # noqa: S324
    with tarfile.open(tar, "w") as tf:
        for d in range(dirs):
            tf.add(src / f"d{d:03d}", arcname=f"d{d:03d}")
    shutil.rmtree(src)
    _trees[tar] = want
    return tar, want


TAR = ["tar", "--no-same-owner", "-xf"]  # as a user extracts (no chown, even as root)


def w_writeback_tar(b: Bench, rtt: int) -> None:
    """``tar -xf`` of the tree into arc on a ``--writeback`` mount, against the same
    into a local directory (and the pyfuse3 passthrough floor); then ``canfarfs sync``
    (reported, not in the ratio) and every file checked on the server."""
    assert b.emu is not None
    key = "writeback_tar"
    tar, want = tree_tarball(b)

    def fs(tag: str) -> None:
        require("writeback")
        require("sync")
        with b.mounted("canfarfs", "arc", WRITEBACK) as (m, home):
            dest = home / "bench" / tag
            on_mount(["mkdir", str(dest)])
            with b.counting() as c:
                cpu = CPU(b, m)
                sec = run([*TAR, str(tar), "-C", str(dest)], timeout=b.args.timeout)
                req_tar = b.emu.requests_seen() if b.emu else 0
                cpu_tar = cpu.seconds()
                t_sync = canfarfs_cli(m, "sync", str(m.path), timeout=b.args.timeout)
                by_method = stats_by_method(b)
        check_on_server(b, f"bench/{tag}", want, "after canfarfs sync")
        b.record(
            key,
            rtt,
            "canfarfs",
            sec,
            files=len(want),
            requests_tar=req_tar,
            **cpu_tar,
            sync_s=round(t_sync, 3),
            by_method=by_method,
            **c,
        )

    def local(where: str) -> None:
        dest = b.new_dir(f"{where}-tar")
        try:
            if where == "floor":
                with b.floored(dest) as mnt:
                    sec = run([*TAR, str(tar), "-C", str(mnt)], timeout=b.args.timeout)
            else:
                sec = run([*TAR, str(tar), "-C", str(dest)], timeout=b.args.timeout)
            got = sum(1 for p in dest.rglob("*") if p.is_file())
            if got != len(want):
                raise Failed(f"{got} of {len(want)} files extracted")
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        b.record(key, rtt, "local dir" if where == "local" else "floor", sec, files=len(want))

    for i in range(b.runs_for(rtt, slow=True)):
        b.measure(key, rtt, i, "canfarfs", partial(fs, f"tar-{rtt}-{i}"))
        b.measure(key, rtt, i, "local dir", partial(local, "local"))
        b.measure(key, rtt, i, "floor", partial(local, "floor"))


def judge_writeback_tar(
    rtt: int, med: dict[str, float | None], ratios: dict[str, float], cells: dict[str, Any]
) -> tuple[str, str]:
    """Within 3× the same ``tar -xf`` into a local directory, at 20 ms."""
    if med.get("canfarfs") is None:
        return "n/a", "canfarfs not measured (see errors)"
    if "local dir" not in ratios:
        return "n/a", "no local figure"
    extra = cells["canfarfs"]["extra"]
    sync = sorted(e["sync_s"] for e in extra if "sync_s" in e)
    why = f"{ratios['local dir']:.1f}× local tar"
    if "floor" in ratios:
        why += f", {ratios['floor']:.1f}× the floor's"
    if sync:
        why += f"; then sync {sync[len(sync) // 2]:.1f} s"
    if rtt == 0:
        return "info", why + "; goal is at 20 ms"
    return ("PASS" if ratios["local dir"] <= 3 else "MISS"), why


# -- canfarfs warmup against a sequential cat -------------------------------------------------


def w_warmup(b: Bench, rtt: int) -> None:
    """``canfarfs warmup DIR`` of the small files (on the server) against ``cat DIR/*``,
    each on a fresh mount (empty cache); after the warm-up, a ``cat`` of them all
    counts the requests it still makes (a warm-up that did not warm fails)."""
    assert b.emu is not None
    emu = b.emu
    key = "warmup_small_files"
    names = sorted(p.name for p in b.small_src.iterdir())
    n = len(names)
    tag = f"warm-{rtt}"
    emu.mkdir("arc", f"home/{USER}/bench/{tag}")
    ups = [
        {
            "url": f"{emu.url}/arc/files/home/{USER}/bench/{tag}/{nm}",
            "upload-file": str(b.small_src / nm),
            "output": "/dev/null",
        }
        for nm in names
    ]
    curl_batch(ups, b.work, parallel=8, timeout=b.args.timeout)
    cat = ["sh", "-c", 'cat -- "$1"/* | wc -c', "sh"]

    def fs() -> None:
        require("warmup")
        with b.mounted("canfarfs", "arc") as (m, home):
            look_up(home / "bench")
            d = home / "bench" / tag
            with b.counting() as c:
                sec = canfarfs_cli(m, "warmup", str(d), timeout=b.args.timeout)
            with b.counting() as after:
                got = int(on_mount([*cat, str(d)], b.args.timeout))
        if got != 4096 * n:
            raise Failed(f"cat after the warm-up read {got} bytes, wanted {4096 * n}")
        if after["requests"] >= n:
            raise Failed(f"cat after the warm-up made {after['requests']} requests for {n} files")
        b.record(
            key,
            rtt,
            "canfarfs",
            n / sec,
            files=n,
            seconds=round(sec, 3),
            requests_cat_after=after["requests"],
            **c,
        )

    def by_cat() -> None:
        with b.mounted("canfarfs", "arc") as (_, home):
            look_up(home / "bench")
            with b.counting() as c:
                t0 = time.perf_counter()
                got = int(on_mount([*cat, str(home / "bench" / tag)], b.args.timeout))
                sec = time.perf_counter() - t0
        if got != 4096 * n:
            raise Failed(f"cat read {got} bytes, wanted {4096 * n}")
        b.record(key, rtt, "cat", n / sec, files=n, seconds=round(sec, 3), **c)

    for i in range(b.runs_for(rtt, slow=True)):
        b.measure(key, rtt, i, "canfarfs", fs)
        b.measure(key, rtt, i, "cat", by_cat)


def judge_warmup(
    rtt: int, med: dict[str, float | None], ratios: dict[str, float], cells: dict[str, Any]
) -> tuple[str, str]:
    """≥ 8× a sequential ``cat`` of the same files (fresh mount each), at 20 ms."""
    if med.get("canfarfs") is None:
        return "n/a", "canfarfs not measured (see errors)"
    if "cat" not in ratios:
        return "n/a", "no cat figure"
    why = f"{ratios['cat']:.1f}× sequential cat"
    if rtt == 0:
        return "info", why + "; goal is at 20 ms"
    return ("PASS" if ratios["cat"] >= 8 else "MISS"), why
