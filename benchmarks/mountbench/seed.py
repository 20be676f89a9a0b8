"""The seed data every workload uses (the big file on arc and vault, the small files,
the listed directory, the random offsets), where it is, and mountvofs's check and copy."""

from __future__ import annotations

import ctypes.util
import hashlib
import http.client
import random
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from _common import human

from .emulator import VOS_NS, Emulator
from .rig import Bench
from .tools import TOKEN, USER, Failed, log, look_up

READ_BLOCK = 64 * 1024
SEED = 20261126


def file_url(b: Bench, service: str, name: str) -> str:
    assert b.emu is not None
    return (
        f"{b.emu.url}/arc/files/home/{USER}/{name}"
        if service == "arc"
        else f"{b.emu.url}/vault/files/{USER}/{name}"
    )


def vos_uri(service: str, name: str) -> str:
    return f"arc:home/{USER}/{name}" if service == "arc" else f"vault:{USER}/{name}"


def make_payload(path: Path, size: int) -> tuple[str, bytes]:
    """``size`` bytes: a random 1 MiB block repeated. Returns (MD5 hex, the block)."""
    block = random.Random(SEED).randbytes(1 << 20)
    md5 = hashlib.md5()  # noqa: S324 - the protocol's checksum
    with path.open("wb") as f:
        left = size
        while left > 0:
            chunk = block[: min(left, len(block))]
            f.write(chunk)
            md5.update(chunk)
            left -= len(chunk)
    return md5.hexdigest(), block


def expected_md5(block: bytes, offsets: list[int], size: int) -> str:
    md5 = hashlib.md5()  # noqa: S324
    n = len(block)
    doubled = block + block
    for off in offsets:
        start = off % n
        md5.update(doubled[start : start + size])
    return md5.hexdigest()


def seed_entries(emu: Emulator, service: str, directory: str, count: int) -> None:
    """``count`` empty DataNodes in one container, four connections at a time."""
    emu.mkdir(service, directory)
    parts = urlsplit(emu.url)
    local = threading.local()

    def put(i: int) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(
                parts.hostname or "127.0.0.1", parts.port, timeout=60
            )
        path = f"{directory}/entry-{i:05d}.fits"
        doc = (
            f'<vos:node {VOS_NS} uri="{emu.uri(service, path)}" xsi:type="vos:DataNode"/>'
        ).encode()
        conn.request(
            "PUT",
            emu.node_path(service, path),
            body=doc,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/xml"},
        )
        reply = conn.getresponse()
        reply.read()
        if reply.status != 201:
            raise SystemExit(f"seeding {service}/{path}: HTTP {reply.status}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(put, range(count)))


def set_up(b: Bench) -> None:
    args = b.args
    assert b.emu is not None
    emu = b.emu
    log(f"writing a {human(args.size)} payload and {args.files} files of 4 KiB ...")
    b.payload_md5, b.block = make_payload(b.payload, args.size)
    b.small_src.mkdir()
    rng = random.Random(SEED + 1)
    for i in range(args.files):
        (b.small_src / f"f{i:05d}.dat").write_bytes(rng.randbytes(4096))
    rng = random.Random(SEED)
    b.offsets = [rng.randrange(0, args.size - READ_BLOCK + 1) for _ in range(args.reads)]
    (b.work / "offsets.txt").write_text("\n".join(map(str, b.offsets)) + "\n")
    b.seed_vos_home()

    log("seeding the emulator (big file on arc and vault, listings) ...")
    emu.upload("arc", f"home/{USER}/big.bin", b.payload)
    emu.upload("vault", f"{USER}/big.bin", b.payload)
    for service, path in (("arc", f"home/{USER}/big.bin"), ("vault", f"{USER}/big.bin")):
        props = emu.node_props(service, path)
        if props != (args.size, b.payload_md5):
            raise SystemExit(f"{service}/{path}: stored {props}, wanted MD5 {b.payload_md5}")
    t0 = time.perf_counter()
    seed_entries(emu, "arc", f"home/{USER}/listing", args.entries)
    seed_entries(emu, "vault", f"{USER}/listing", args.entries)
    log(f"  {2 * args.entries} entries in {time.perf_counter() - t0:.1f} s")
    for service, home in (("arc", f"home/{USER}"), ("vault", USER)):
        emu.mkdir(service, f"{home}/bench")


def check_vofs(b: Bench) -> None:
    """Is mountvofs installed where we look, with libfuse 2? Does it mount?"""
    if b.args.no_vofs:
        b.vofs_status = "not measured: --no-vofs"
        return
    target = b.args.vofs_target
    if not (target / "bin" / "mountvofs").exists():
        b.vofs_status = (
            f"not installed: no {target}/bin/mountvofs "
            "(run with --install-vofs; needs apt libfuse2)"
        )
        return
    if ctypes.util.find_library("fuse") is None:
        b.vofs_status = "not installed: libfuse.so.2 missing (apt-get install libfuse2)"
        return
    try:
        with b.mounted("mountvofs", "arc") as (_, home):
            look_up(home / "big.bin")
    except Failed as exc:
        b.vofs_status = f"not working: {exc}"
        return
    b.vofs_ok = True
    b.vofs_status = "vofs 3.1 (mountvofs), pip --target " + str(target)
    # mountvofs moves bytes at about 10-20 MB/s: its big-file rows use a smaller copy of
    # the payload (same bytes), and its small-file row a subset of the files
    assert b.emu is not None
    with b.payload.open("rb") as f, b.vofs_payload.open("wb") as out:
        shutil.copyfileobj(f, out, 1 << 20) if b.vofs_size == b.args.size else out.write(
            f.read(b.vofs_size)
        )
    b.vofs_md5 = hashlib.md5(b.vofs_payload.read_bytes()).hexdigest()  # noqa: S324
    b.emu.upload("arc", f"home/{USER}/vofs.bin", b.vofs_payload)
    b.emu.upload("vault", f"{USER}/vofs.bin", b.vofs_payload)
    b.small_vofs.mkdir()
    for p in sorted(b.small_src.iterdir())[: min(b.args.files, b.args.vofs_files)]:
        shutil.copy(p, b.small_vofs / p.name)
    b.vofs_status += (
        f"; big-file rows on a {human(b.vofs_size)} file, small files on "
        f"{len(list(b.small_vofs.iterdir()))} files, {b.args.vofs_runs} run(s), "
        f"listing commands bounded at {b.args.peer_timeout:.0f} s"
    )


def install_vofs(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "vofs", "six"],
        check=True,
    )
