"""The read path through a real mount (docs/performance.md, "The read path"): bytes are
served from memory as they arrive and cached behind the reader. Each case checks the
bytes a user reads and how many bytes the mount fetched from the server for them
(``fetched`` in the status document)."""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.mount_util import Rig, data, home, needs_fuse, start_mount

pytestmark = [needs_fuse, pytest.mark.fuse, pytest.mark.semantics("Reading")]
MiB = 1024 * 1024
SERVICES = ["arc", "vault"]


def fetched(rig: Rig) -> int:
    doc = json.loads((rig.mount.path / ".canfarfs-control").read_bytes())
    return int(doc["fetched"])


def remount(rig: Rig, *extra: str) -> None:
    rig.mount.unmount()
    rig.mount = start_mount(
        rig.mount.path, [*rig.mount_args, *extra], env=dict(os.environ, CANFARFS_USER="alice")
    )


def put(rig: Rig, service: str, name: str, payload: bytes, *extra: str) -> Path:
    """Write through the mount, then remount (with ``extra`` options) so the next read
    is cold: the mount keeps what it wrote."""
    path = home(rig, service) / name
    path.write_bytes(payload)
    remount(rig, *extra)
    return path


@pytest.mark.parametrize("service", SERVICES)
def test_a_body_cut_mid_stream_is_resumed(rig: Rig, service: str) -> None:
    payload = data(24 * MiB)
    path = put(rig, service, "cut.bin", payload)
    before = fetched(rig)
    rig.faults(drop_next=1, drop_after=700_007, methods=["GET"])
    assert path.read_bytes() == payload
    assert rig.live.stats()["dropped"] == 1
    got = fetched(rig) - before
    # vault resumes at the cut; arc (no ranges) restarts and skips what it holds.
    limit = len(payload) + (0 if service == "vault" else MiB)
    assert len(payload) <= got <= limit, got


@pytest.mark.parametrize("service", SERVICES)
def test_a_reader_killed_mid_stream_leaves_the_mount_well(rig: Rig, service: str) -> None:
    payload = data(48 * MiB)
    path = put(rig, service, "killed.bin", payload)
    rig.faults(latency=0.05)  # slow enough to kill the reader mid-file
    reader = subprocess.Popen(
        ["dd", f"if={path}", "of=/dev/null", "bs=1M"], stderr=subprocess.DEVNULL
    )
    time.sleep(0.5)
    reader.send_signal(signal.SIGKILL)
    reader.wait(10)
    rig.clear()
    with path.open("rb") as f:  # the next reader gets every byte
        assert f.read() == payload
    assert fetched(rig) <= 2 * len(payload)


@pytest.mark.parametrize("service", SERVICES)
def test_a_sequential_and_a_random_reader_of_one_file(rig: Rig, service: str) -> None:
    payload = data(64 * MiB)
    path = put(rig, service, "two.bin", payload)
    before = fetched(rig)
    errors: list[str] = []

    def random_reader() -> None:
        with path.open("rb") as f:
            for i in range(200):
                offset = (i * 7_919_113) % (len(payload) - 4096)
                f.seek(offset)
                if f.read(4096) != payload[offset : offset + 4096]:
                    errors.append(f"random read at {offset}")

    t = threading.Thread(target=random_reader)
    t.start()
    with path.open("rb") as f:
        got = b"".join(iter(lambda: f.read(MiB), b""))
    t.join(60)
    assert got == payload
    assert not errors
    # One download serves both (arc: one stream; vault: ranges, each asked once or
    # a little more where the random reader asked first).
    assert fetched(rig) - before <= len(payload) * 3 // 2


@pytest.mark.parametrize("service", SERVICES)
def test_a_reader_overtaking_the_read_ahead(rig: Rig, service: str) -> None:
    """A reader that jumps ahead of what is being fetched gets its bytes; vault fetches
    just what was skipped to, arc's one stream brings it."""
    payload = data(64 * MiB)
    path = put(rig, service, "ahead.bin", payload)
    before = fetched(rig)
    with path.open("rb") as f:
        assert f.read(MiB) == payload[:MiB]
        f.seek(40 * MiB)
        assert f.read(MiB) == payload[40 * MiB : 41 * MiB]
        f.seek(MiB)
        assert f.read(2 * MiB) == payload[MiB : 3 * MiB]
    got = fetched(rig) - before
    if service == "vault":
        assert got < len(payload) // 2, got  # the 37 MiB skipped were not fetched
    else:
        assert got <= 2 * len(payload), got


@pytest.mark.parametrize("service", SERVICES)
def test_mmap_reads_the_right_bytes(rig: Rig, service: str) -> None:
    payload = data(20 * MiB + 123)
    path = put(rig, service, "mapped.bin", payload)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        assert m[-123:] == payload[-123:]
        assert m[5 * MiB : 5 * MiB + 4096] == payload[5 * MiB : 5 * MiB + 4096]
        assert m[:] == payload


def test_a_fits_header_then_a_seek_fetches_little_of_a_vault_file(rig: Rig) -> None:
    """astropy reads a FITS header (2880-byte blocks), then seeks to the data it wants:
    on vault that costs about the blocks read, not the file."""
    payload = data(96 * MiB)
    path = put(rig, "vault", "cube.fits", payload)
    before = fetched(rig)
    with path.open("rb") as f:
        assert f.read(2880 * 2) == payload[: 2880 * 2]
        f.seek(80 * MiB)
        assert f.read(64 * 1024) == payload[80 * MiB : 80 * MiB + 64 * 1024]
    assert fetched(rig) - before <= 16 * MiB


def test_eviction_while_a_reader_streams(rig: Rig) -> None:
    """A mount whose cache holds less than what is read: a streaming reader's file is
    never taken from under it, every byte read is right, and the cache stays within
    its budget (files over it are streamed through memory)."""
    payloads = {f"f{i}.bin": data(16 * MiB + i) for i in range(4)}
    for name, payload in payloads.items():
        (home(rig, "vault") / name).write_bytes(payload)
    big = data(40 * MiB)
    put(rig, "arc", "big.bin", big, "--cache-size", "24M")
    with (home(rig, "arc") / "big.bin").open("rb") as streaming:
        got = bytearray(streaming.read(8 * MiB))
        for name, payload in payloads.items():  # each read evicts the one before
            assert (home(rig, "vault") / name).read_bytes() == payload
            got += streaming.read(8 * MiB)
        got += streaming.read()
    assert bytes(got) == big
    doc = json.loads((rig.mount.path / ".canfarfs-control").read_bytes())
    assert doc["cache"]["used"] <= 24 * MiB + 17 * MiB  # one file over, while in use
    assert doc["memory"]["peak"] <= doc["memory"]["budget"] + 8 * MiB


def test_memory_stays_bounded_for_a_file_bigger_than_the_cache(rig: Rig) -> None:
    """A one-pass read of a file larger than the cache goes through memory only: the
    daemon's memory stays within its budget, and nothing is cached."""
    payload = data(96 * MiB)
    path = put(rig, "arc", "stream.bin", payload, "--cache-size", "16M", "--memory", "16M")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == hashlib.sha256(payload).hexdigest()
    doc = json.loads((rig.mount.path / ".canfarfs-control").read_bytes())
    assert doc["memory"]["peak"] <= 16 * MiB + 8 * MiB  # pieces a reader waited for
    assert doc["cache"]["used"] == 0
