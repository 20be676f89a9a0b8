"""Uploads that stream while a new arc file is written (docs/semantics.md, "Writing").

A new arc file written in order past 8 MiB is sent in one chunked PUT as it is written;
``close()`` finishes it and checks the server's MD5. Anything that breaks the order, or
the stream itself, falls back to uploading the staged copy: the server always ends with
exactly the bytes written.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

import httpx2
import pytest

from tests.emulator_util import TOKEN
from tests.mount_util import Rig, data, home, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse, pytest.mark.semantics("Writing and durability")]
MiB = 1024 * 1024


def stats(r: Rig) -> dict[str, int]:
    return dict(r.live.stats()["by_method"])


def on_server(r: Rig, name: str) -> bytes | None:
    got = httpx2.get(
        f"{r.live.url}/arc/files/home/alice/{name}",
        timeout=30,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    if got.status_code == 404:
        return None
    assert got.status_code in (200, 204), got.text
    return got.content


def write_chunks(f: BinaryIO, payload: bytes, start: int = 0, end: int | None = None) -> None:
    end = len(payload) if end is None else end
    for off in range(start, end, MiB):
        f.write(payload[off : min(off + MiB, end)])


def test_a_large_new_file_streams_while_written_in_one_put(rig: Rig) -> None:
    payload = data(24 * MiB)
    target = home(rig, "arc") / "streamed.bin"
    rig.live.reset_stats()
    with open(target, "wb") as f:
        write_chunks(f, payload, 0, 16 * MiB)
        f.flush()
        assert stats(rig).get("PUT") == 1, "the upload did not start before close()"
        write_chunks(f, payload, 16 * MiB)
    assert stats(rig).get("PUT") == 1
    assert on_server(rig, "streamed.bin") == payload
    node = rig.node("arc", "home/alice/streamed.bin").text
    assert hashlib.md5(payload).hexdigest() in node  # noqa: S324 - protocol checksum
    assert target.stat().st_size == len(payload)


def test_small_files_do_not_stream(rig: Rig) -> None:
    payload = data(3 * MiB)
    rig.live.reset_stats()
    (home(rig, "arc") / "small.bin").write_bytes(payload)
    assert stats(rig).get("PUT") == 1
    assert on_server(rig, "small.bin") == payload


def test_a_write_out_of_order_falls_back_to_the_staged_copy(rig: Rig) -> None:
    payload = bytearray(data(12 * MiB))
    target = home(rig, "arc") / "rewritten.bin"
    rig.live.reset_stats()
    with open(target, "wb") as f:
        write_chunks(f, bytes(payload), 0, 10 * MiB)
        f.flush()
        f.seek(100)
        f.write(b"X" * 1000)
        payload[100:1100] = b"X" * 1000
        f.seek(10 * MiB)
        write_chunks(f, bytes(payload), 10 * MiB)
    assert stats(rig).get("PUT") == 2  # the abandoned stream, then the staged copy
    assert on_server(rig, "rewritten.bin") == bytes(payload)


def test_a_stream_refused_by_the_server_falls_back(rig: Rig) -> None:
    payload = data(12 * MiB)
    rig.faults(fail_next=1, fail_status=503, methods=["PUT"])
    target = home(rig, "arc") / "refused.bin"
    rig.live.reset_stats()
    with open(target, "wb") as f:
        write_chunks(f, payload)
    assert stats(rig).get("PUT") == 2  # the refused stream, then the staged copy
    assert on_server(rig, "refused.bin") == payload


def test_unlink_while_streaming_leaves_nothing(rig: Rig) -> None:
    payload = data(12 * MiB)
    target = home(rig, "arc") / "doomed.bin"
    with open(target, "wb") as f:
        write_chunks(f, payload)
        f.flush()
        os.unlink(target)
    assert on_server(rig, "doomed.bin") is None
    assert not target.exists()


def test_rename_while_streaming_lands_at_the_new_name(rig: Rig) -> None:
    payload = data(16 * MiB)
    old, new = home(rig, "arc") / "before.bin", home(rig, "arc") / "after.bin"
    with open(old, "wb") as f:
        write_chunks(f, payload, 0, 10 * MiB)
        f.flush()
        os.rename(old, new)
        write_chunks(f, payload, 10 * MiB)
    assert on_server(rig, "before.bin") is None
    assert on_server(rig, "after.bin") == payload
    assert new.read_bytes() == payload


def test_truncate_while_streaming(rig: Rig) -> None:
    payload = data(14 * MiB)
    target = home(rig, "arc") / "cut.bin"
    with open(target, "wb") as f:
        write_chunks(f, payload, 0, 12 * MiB)
        f.flush()
        f.truncate(5 * MiB)
        f.seek(5 * MiB)
        write_chunks(f, payload, 5 * MiB)
    assert on_server(rig, "cut.bin") == payload


def test_fsync_mid_file_then_more_writes(rig: Rig) -> None:
    payload = data(20 * MiB)
    target = home(rig, "arc") / "synced.bin"
    with open(target, "wb") as f:
        write_chunks(f, payload, 0, 10 * MiB)
        f.flush()
        os.fsync(f.fileno())
        assert on_server(rig, "synced.bin") == payload[: 10 * MiB]
        write_chunks(f, payload, 10 * MiB)
    assert on_server(rig, "synced.bin") == payload


def test_the_copy_is_byte_identical_with_cp(rig: Rig, tmp_path: Path) -> None:
    import subprocess

    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(33 * MiB + 123))
    subprocess.run(["cp", str(src), str(home(rig, "arc") / "cp.bin")], check=True)
    assert on_server(rig, "cp.bin") == src.read_bytes()
