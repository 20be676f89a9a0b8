"""Writing: the big file, many small files in and out, and parallel writers."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ..rig import TOOLS, Bench
from ..seed import vos_uri
from ..tools import USER, Failed, curl, curl_batch, look_up, mb_s, on_mount, run


def count_on_server(b: Bench, directory: str, n: int) -> int:
    """How many of the small files the server holds with 4096 bytes."""
    assert b.emu is not None
    status, _, data = b.emu.request("GET", b.emu.node_path("arc", f"home/{USER}/{directory}"))
    if status != 200:
        return 0
    return len(re.findall(r'core#length"[^>]*>4096<', data.decode()))


def w_write(b: Bench, rtt: int) -> None:
    """Sequential write of the big file into arc, until close() returns (bytes on server)."""
    assert b.emu is not None
    emu = b.emu
    key, size = "write_arc", b.args.size

    def on_server(name: str, deadline: float, want: tuple[int, str]) -> None:
        """Wait until the server holds the whole file with the payload's MD5."""
        while True:
            props = emu.node_props("arc", f"home/{USER}/bench/{name}")
            if props == want:
                return
            if time.perf_counter() > deadline:
                raise Failed(f"server holds {props} after the copy")
            time.sleep(0.05)

    def fs(tool: str, name: str) -> None:
        src, want = (
            (b.payload, (size, b.payload_md5))
            if tool == "canfarfs"
            else (b.vofs_payload, (b.vofs_size, b.vofs_md5))
        )
        with b.mounted(tool, "arc") as (m, home):
            look_up(home / "bench")
            with b.counting() as c:
                t0 = time.perf_counter()
                run(["cp", str(src), str(home / "bench" / name)], timeout=b.args.timeout)
                t_close = time.perf_counter() - t0
                on_server(name, time.perf_counter() + b.args.timeout, want)
                sec = time.perf_counter() - t0
            extra: dict[str, Any] = dict(
                c,
                seconds=round(sec, 3),
                bytes=want[0],
                close_returned_s=round(t_close, 3),
                **m.peak_rss(),
            )
            if tool == "canfarfs":
                b.record("rss", rtt, "write_arc", extra.get("vm_hwm_mb"))
                extra["fuse"] = m.status().get("fuse", {})
            b.record(key, rtt, tool, mb_s(want[0], sec), **extra)

    def by_curl(name: str) -> None:
        with b.counting() as c:
            r = curl(
                f"{emu.url}/arc/files/home/{USER}/bench/{name}",
                upload=b.payload,
                timeout=b.args.timeout,
            )
        if r.status != 201 or r.up != size:
            raise Failed(f"curl PUT: HTTP {r.status}, {r.up} bytes")
        b.record(key, rtt, "curl", mb_s(size, r.total), seconds=round(r.total, 3), **c)

    def by_vcp(name: str) -> None:
        with b.counting() as c:
            sec = b.vos("vcp", str(b.payload), vos_uri("arc", f"bench/{name}"))
        on_server(name, time.perf_counter() + 30, (size, b.payload_md5))
        b.record(key, rtt, "vcp", mb_s(size, sec), seconds=round(sec, 3), **c)

    def floor(name: str) -> None:
        """``cp`` of the payload through the passthrough onto the work disk, where
        canfarfs keeps its staging files."""
        dest = b.new_dir("floor-write")
        with b.floored(dest) as mnt:
            sec = run(["cp", str(b.payload), str(mnt / name)], timeout=b.args.timeout)
        shutil.rmtree(dest, ignore_errors=True)
        b.record(key, rtt, "floor", mb_s(size, sec), seconds=round(sec, 3))

    by_tool: dict[str, Callable[[str], None]] = {
        "canfarfs": partial(fs, "canfarfs"),
        "mountvofs": partial(fs, "mountvofs"),
        "curl": by_curl,
        "vcp": by_vcp,
        "floor": floor,
    }
    for i in range(b.runs_for(rtt, slow=True)):
        for tool in b.tools(*TOOLS, "floor", run=i):
            name = f"write-{tool}-{rtt}-{i}.bin"
            b.measure(key, rtt, i, tool, partial(by_tool[tool], name))
            if tool != "floor":
                emu.delete("arc", f"home/{USER}/bench/{name}")


def w_small(b: Bench, rtt: int) -> None:
    """N files of 4 KiB: ``cp -r`` in (one mount) and then out (a fresh mount)."""
    assert b.emu is not None
    emu = b.emu
    key, n_all = "small_files_arc", b.args.files
    names = sorted(p.name for p in b.small_src.iterdir())

    def fs(tool: str, tag: str) -> None:
        dest = f"bench/{tag}"
        src = b.small_src if tool == "canfarfs" else b.small_vofs
        n = len(list(src.iterdir()))
        with b.mounted(tool, "arc") as (_, home):
            look_up(home / "bench")
            with b.counting() as c_in:
                t0 = time.perf_counter()
                run(["cp", "-r", str(src), str(home / dest)], timeout=b.args.timeout)
                t_cp = time.perf_counter() - t0
                while count_on_server(b, dest, n) < n:  # mountvofs may upload after close
                    if time.perf_counter() - t0 > b.args.timeout:
                        raise Failed("files not on the server after the copy")
                    time.sleep(0.05)
                t_in = time.perf_counter() - t0
        out = b.new_dir("small-out")
        with b.mounted(tool, "arc") as (_, home):
            look_up(home / "bench")
            with b.counting() as c_out:
                t_out = run(
                    ["cp", "-r", str(home / dest), str(out / "copy")], timeout=b.args.timeout
                )
        got = len(list((out / "copy").iterdir()))
        shutil.rmtree(out)
        if got != n:
            raise Failed(f"copied out {got} of {n} files")
        b.record(
            key,
            rtt,
            tool,
            2 * n / (t_in + t_out),
            files=n,
            in_s=round(t_in, 3),
            cp_in_returned_s=round(t_cp, 3),
            out_s=round(t_out, 3),
            requests_in=c_in["requests"],
            requests_out=c_out["requests"],
        )

    def by_curl(tag: str) -> None:
        n = n_all
        emu.mkdir("arc", f"home/{USER}/bench/{tag}")
        base = f"{emu.url}/arc/files/home/{USER}/bench/{tag}"
        ups = [
            {"url": f"{base}/{nm}", "upload-file": str(b.small_src / nm), "output": os.devnull}
            for nm in names
        ]
        out = b.new_dir("small-out")
        downs = [{"url": f"{base}/{nm}", "output": str(out / nm)} for nm in names]
        with b.counting() as c_in:
            t_in = curl_batch(ups, b.work, timeout=b.args.timeout)
        with b.counting() as c_out:
            t_out = curl_batch(downs, b.work, timeout=b.args.timeout)
        got = len(list(out.iterdir()))
        shutil.rmtree(out)
        if got != n:
            raise Failed(f"curl fetched {got} of {n} files")
        b.record(
            key,
            rtt,
            "curl",
            2 * n / (t_in + t_out),
            in_s=round(t_in, 3),
            out_s=round(t_out, 3),
            requests_in=c_in["requests"],
            requests_out=c_out["requests"],
        )

    def by_vcp(tag: str) -> None:
        k = min(n_all, b.args.vcp_sample)
        emu.mkdir("arc", f"home/{USER}/bench/{tag}")
        out = b.new_dir("small-out")
        t_in = t_out = 0.0
        with b.counting() as c:
            for nm in names[:k]:
                t_in += b.vos("vcp", str(b.small_src / nm), vos_uri("arc", f"bench/{tag}/{nm}"))
            for nm in names[:k]:
                t_out += b.vos("vcp", vos_uri("arc", f"bench/{tag}/{nm}"), str(out / nm))
        shutil.rmtree(out)
        b.record(
            key,
            rtt,
            "vcp",
            2 * k / (t_in + t_out),
            sampled_files=k,
            in_s_per_file=round(t_in / k, 3),
            out_s_per_file=round(t_out / k, 3),
            requests_per_file=round(c["requests"] / k, 1),
        )

    def floor(tag: str) -> None:
        """``cp -r`` in and out through the passthrough (fresh mounts), on the work disk."""
        n = n_all
        dest = b.new_dir("floor-small")
        with b.floored(dest) as mnt:
            t_in = run(["cp", "-r", str(b.small_src), str(mnt / tag)], timeout=b.args.timeout)
        out = b.new_dir("small-out")
        with b.floored(dest) as mnt:
            look_up(mnt / tag)
            t_out = run(["cp", "-r", str(mnt / tag), str(out / "copy")], timeout=b.args.timeout)
        got = len(list((out / "copy").iterdir()))
        shutil.rmtree(out)
        shutil.rmtree(dest, ignore_errors=True)
        if got != n:
            raise Failed(f"copied out {got} of {n} files")
        b.record(
            key, rtt, "floor", 2 * n / (t_in + t_out), in_s=round(t_in, 3), out_s=round(t_out, 3)
        )

    by_tool: dict[str, Callable[[str], None]] = {
        "canfarfs": partial(fs, "canfarfs"),
        "mountvofs": partial(fs, "mountvofs"),
        "curl": by_curl,
        "vcp": by_vcp,
        "floor": floor,
    }
    for i in range(b.runs_for(rtt, slow=True)):
        for tool in b.tools(*TOOLS, "floor", run=i):
            b.measure(key, rtt, i, tool, partial(by_tool[tool], f"small-{tool}-{rtt}-{i}"))


def w_parallel(b: Bench, rtt: int) -> None:
    """The small files written by 8 parallel writers vs 1 (``xargs -P8 cp``)."""
    assert b.emu is not None
    emu = b.emu
    key, n = "parallel_writers_arc", b.args.files
    names = sorted(p.name for p in b.small_src.iterdir())
    listing = b"\0".join(str(b.small_src / nm).encode() for nm in names) + b"\0"
    batch = max(1, min(4, n // 16))

    def fs(tag: str) -> None:
        with b.mounted("canfarfs", "arc") as (_, home):
            rates = {}
            for writers in (1, 8):
                dest = home / "bench" / f"{tag}-p{writers}"
                on_mount(["mkdir", str(dest)])
                with b.counting() as c:
                    sec = run(
                        ["xargs", "-0", f"-P{writers}", "-n", str(batch), "cp", "-t", str(dest)],
                        stdin=listing,
                        timeout=b.args.timeout,
                    )
                if count_on_server(b, f"bench/{tag}-p{writers}", n) != n:
                    raise Failed(f"{writers} writers: files missing on the server")
                rates[writers] = n / sec
                b.record(key, rtt, f"canfarfs x{writers}", n / sec, seconds=round(sec, 3), **c)
            b.record(key, rtt, "canfarfs", rates[8] / rates[1])

    def by_curl(tag: str) -> None:
        rates = {}
        for writers in (1, 8):
            d = f"bench/{tag}-p{writers}"
            emu.mkdir("arc", f"home/{USER}/{d}")
            ups = [
                {
                    "url": f"{emu.url}/arc/files/home/{USER}/{d}/{nm}",
                    "upload-file": str(b.small_src / nm),
                    "output": os.devnull,
                }
                for nm in names
            ]
            sec = curl_batch(
                ups, b.work, parallel=writers if writers > 1 else 0, timeout=b.args.timeout
            )
            rates[writers] = n / sec
            b.record(key, rtt, f"curl x{writers}", n / sec, seconds=round(sec, 3))
        b.record(key, rtt, "curl", rates[8] / rates[1])

    for i in range(b.runs_for(rtt, slow=True)):
        for tool, fn in (("canfarfs", fs), ("curl", by_curl)):
            b.measure(key, rtt, i, tool, partial(fn, f"par-{tool}-{rtt}-{i}"))
