"""Reading the big file: sequentially, after the cache was filled, its first byte, and
random 64 KiB pieces."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from functools import partial
from typing import Any

from ..rig import TOOLS, Bench
from ..seed import READ_BLOCK, expected_md5, file_url, vos_uri
from ..tools import (
    USER,
    Failed,
    curl,
    curl_batch,
    curl_ttfb,
    http_get,
    look_up,
    mb_s,
    py_timed,
    run,
)

FILLERS = 5  # files of --size read into the cache before the full-cache row


def w_read(b: Bench, rtt: int, service: str) -> None:
    """Sequential read of the big file: ``cat > /dev/null`` on a fresh mount."""
    key, size = f"read_{service}", b.args.size
    timeout = b.args.timeout

    def fs(tool: str) -> None:
        name, nbytes = ("big.bin", size) if tool == "canfarfs" else ("vofs.bin", b.vofs_size)
        with b.mounted(tool, service) as (m, home):
            look_up(home / name)
            with b.counting() as c:
                sec = run(["cat", str(home / name)], timeout=timeout)
            extra: dict[str, Any] = dict(c, seconds=round(sec, 3), bytes=nbytes, **m.peak_rss())
            if tool == "canfarfs":
                st = m.status()
                extra["cache_used"] = st["cache"]["used"]
                extra["cache_budget"] = st["cache"]["budget"]
                extra["fuse"] = st.get("fuse", {})
                b.record("rss", rtt, f"read_{service}", extra.get("vm_hwm_mb"))
            b.record(key, rtt, tool, mb_s(nbytes, sec), **extra)

    def by_curl() -> None:
        with b.counting() as c:
            r = curl(file_url(b, service, "big.bin"), follow=service == "vault", timeout=timeout)
        if r.status != 200 or r.down != size:
            raise Failed(f"curl GET: HTTP {r.status}, {r.down} bytes")
        b.record(key, rtt, "curl", mb_s(size, r.total), seconds=round(r.total, 3), **c)

    def by_vcp() -> None:
        dest = b.work / "vcp-download.bin"
        with b.counting() as c:
            sec = b.vos("vcp", vos_uri(service, "big.bin"), str(dest))
        got = dest.stat().st_size
        dest.unlink()
        if got != size:
            raise Failed(f"vcp wrote {got} bytes")
        b.record(key, rtt, "vcp", mb_s(size, sec), seconds=round(sec, 3), **c)

    def floor() -> None:
        """``cat`` of the same bytes through the passthrough (a fresh mount)."""
        src = b.shm / "floor-read"
        if not src.exists():
            src.mkdir()
            os.link(b.payload, src / "big.bin")
        with b.floored(src) as mnt:
            look_up(mnt / "big.bin")
            sec = run(["cat", str(mnt / "big.bin")], timeout=timeout)
        b.record(key, rtt, "floor", mb_s(size, sec), seconds=round(sec, 3))

    by_tool: dict[str, Callable[[], None]] = {
        "canfarfs": partial(fs, "canfarfs"),
        "mountvofs": partial(fs, "mountvofs"),
        "curl": by_curl,
        "vcp": by_vcp,
        "floor": floor,
    }
    for i in range(b.runs_for(rtt, slow=True)):
        for tool in b.tools(*TOOLS, "floor", run=i):
            b.measure(key, rtt, i, tool, by_tool[tool])


def w_read_full_cache(b: Bench, rtt: int) -> None:
    """The cold read of the big arc file made after FILLERS other files of the same size
    were read through the same mount (a cache holding about 5 GiB at full size)."""
    assert b.emu is not None
    key, size = "read_arc_full_cache", b.args.size
    fill_dir = b.emu.root / "arc" / "home" / USER / "fill"
    fill_dir.mkdir(exist_ok=True)
    first = fill_dir / "fill0.bin"
    if not first.exists():  # the payload may sit on another file system (shm)
        shutil.copyfile(b.payload, first)
    for i in range(1, FILLERS):  # the same bytes under other names: arc serves its disk
        target = fill_dir / f"fill{i}.bin"
        if not target.exists():
            os.link(first, target)

    def fs() -> None:
        with b.mounted("canfarfs", "arc") as (m, home):
            for i in range(FILLERS):
                run(["cat", str(home / "fill" / f"fill{i}.bin")], timeout=b.args.timeout)
            before = m.status()["cache"]["used"]
            look_up(home / "big.bin")
            sec = run(["cat", str(home / "big.bin")], timeout=b.args.timeout)
            b.record(
                key,
                rtt,
                "canfarfs",
                mb_s(size, sec),
                seconds=round(sec, 3),
                cache_used_before=before,
            )

    def by_curl() -> None:
        r = curl(file_url(b, "arc", "big.bin"), timeout=b.args.timeout)
        b.record(key, rtt, "curl", mb_s(size, r.total), seconds=round(r.total, 3))

    for i in range(b.runs_for(rtt, slow=True)):
        for tool, fn in (("canfarfs", fs), ("curl", by_curl)):
            b.measure(key, rtt, i, tool, fn)


def w_ttfb(b: Bench, rtt: int, service: str) -> None:
    """Time to the first byte of the big file: open + read(1) on a fresh mount."""
    key = f"ttfb_{service}"
    timeout = min(b.args.timeout, 120)
    url = file_url(b, service, "big.bin")

    def fs(tool: str, cold: bool) -> None:
        with b.mounted(tool, service) as (_, home):
            if not cold:
                look_up(home / "big.bin")
            with b.counting() as c:
                got = py_timed(["ttfb", str(home / "big.bin")], timeout)
            name = tool if not cold else f"{tool} (cold path)"
            b.record(key, rtt, name, got["seconds"], **c)

    def by_curl() -> None:
        b.record(key, rtt, "curl", curl_ttfb(url, service == "vault", timeout))

    def by_http_client() -> None:
        """The first byte of the body (curl's starttransfer is the first byte of the
        headers, which a reader of the file never sees)."""
        sec, _ = http_get(url, first_byte=True, timeout=timeout)
        b.record(key, rtt, "http.client", sec)

    for i in range(b.runs_for(rtt, slow=False)):
        plan: list[tuple[str, Callable[[], None]]] = [
            ("canfarfs", partial(fs, "canfarfs", False)),
            ("canfarfs (cold path)", partial(fs, "canfarfs", True)),
            ("curl", by_curl),
            ("http.client", by_http_client),
        ]
        if b.tools("mountvofs", run=i):
            plan.append(("mountvofs", partial(fs, "mountvofs", False)))
        for tool, fn in plan:
            b.measure(key, rtt, i, tool, fn)


def w_random(b: Bench, rtt: int) -> None:
    """N random 64 KiB preads in the big vault file (fixed seed)."""
    assert b.emu is not None
    key = "random_vault"
    offsets_file = b.work / "offsets.txt"
    want_md5 = expected_md5(b.block, b.offsets, READ_BLOCK)
    read_bytes = len(b.offsets) * READ_BLOCK

    def fs(tool: str) -> None:
        with b.mounted(tool, "vault") as (m, home):
            look_up(home / "big.bin")
            with b.counting() as c:
                got = py_timed(
                    ["random", str(home / "big.bin"), str(READ_BLOCK), str(offsets_file)],
                    b.args.timeout,
                )
            if got["md5"] != want_md5 or got["bytes"] != read_bytes:
                raise Failed(f"{tool} returned wrong bytes for the random reads")
            extra: dict[str, Any] = dict(c, read_bytes=read_bytes)
            if tool == "canfarfs":
                st = m.status()
                extra["cache_used"] = st["cache"]["used"]
                extra["fuse"] = st.get("fuse", {})
            b.record(key, rtt, tool, got["seconds"], **extra)

    def by_curl() -> None:
        assert b.emu is not None
        url = b.emu.minoc_url(f"{USER}/big.bin")  # one redirect, as the mount needs
        entries = [
            {"url": url, "range": f"{o}-{o + READ_BLOCK - 1}", "output": os.devnull}
            for o in b.offsets
        ]
        with b.counting() as c:
            sec = curl_batch(entries, b.work, timeout=b.args.timeout)
        b.record(key, rtt, "curl", sec, read_bytes=read_bytes, **c)

    for i in range(b.runs_for(rtt, slow=True)):
        plan: list[tuple[str, Callable[[], None]]] = [
            ("canfarfs", partial(fs, "canfarfs")),
            ("curl", by_curl),
        ]
        if b.tools("mountvofs", run=i):
            plan.append(("mountvofs", partial(fs, "mountvofs")))
        for tool, fn in plan:
            b.measure(key, rtt, i, tool, fn)
