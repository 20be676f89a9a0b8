"""Cache files and downloads in process: bytes readable from memory as they arrive,
written behind to disk, within one memory budget (docs/architecture.md, "Reading a
file")."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio

from canfarfs.emulator.app import Emulator
from canfarfs.emulator.faults import FaultPlan
from canfarfs.fs.cachefile import CacheFile, Intervals
from canfarfs.fs.membudget import MemoryBudget
from canfarfs.fs.remote_file import RemoteFile
from tests.vospace_util import client_for

MiB = 1024 * 1024


def piece(i: int, size: int = MiB) -> bytes:
    return bytes([i % 251]) * size


async def settle() -> None:
    """Let the write-behind task and its worker threads finish."""
    for _ in range(50):
        await trio.sleep(0.01)


def test_intervals_remove_cuts_holes() -> None:
    iv = Intervals()
    iv.add(0, 100)
    iv.add(200, 300)
    iv.remove(50, 250)
    assert list(zip(iv.starts, iv.ends, strict=True)) == [(0, 50), (250, 300)]
    iv.remove(0, 1000)
    assert iv.starts == []
    assert iv.ends == []


async def test_bytes_are_readable_at_once_and_written_behind(tmp_path: Path) -> None:
    budget = MemoryBudget(8 * MiB)
    async with trio.open_nursery() as nursery:
        cache = CacheFile(tmp_path / "c", 4 * MiB, budget=budget, nursery=nursery)
        assert await cache.accept(0, piece(0))
        got = cache.read_now(0, MiB)  # before any disk write
        assert got is not None
        assert bytes(got) == piece(0)
        assert isinstance(got, bytes | memoryview)
        await settle()
        assert cache.on_disk.covers(0, MiB)
        assert cache.in_memory == 0  # read and on disk: let go
        assert budget.used == 0
        assert (tmp_path / "c").read_bytes()[:MiB] == piece(0)
        nursery.cancel_scope.cancel()
    cache.close()


async def test_a_full_budget_holds_a_download_until_a_reader_consumes(tmp_path: Path) -> None:
    """Nothing on disk (no write-behind), nothing read: the third piece waits; a reader
    consuming the first lets it in, and the consumed piece (not cached) leaves a hole."""
    budget = MemoryBudget(2 * MiB)
    cache = CacheFile(tmp_path / "c", 8 * MiB, budget=budget)  # no nursery: memory only
    assert await cache.accept(0, piece(0))
    assert await cache.accept(MiB, piece(1))
    accepted = trio.Event()

    async def third() -> None:
        assert await cache.accept(2 * MiB, piece(2))
        accepted.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(third)
        await trio.sleep(0.05)
        assert not accepted.is_set()
        got = cache.read_now(0, MiB)
        assert got is not None
        assert bytes(got) == piece(0)
        with trio.fail_after(2):
            await accepted.wait()
    assert budget.used <= 2 * MiB
    assert not cache.filled.covers(0, MiB)  # read once, not cached
    assert cache.skipped == MiB
    cache.close()
    assert budget.used == 0


async def test_bytes_a_reader_waits_for_are_always_let_in(tmp_path: Path) -> None:
    """Two downloads cannot starve each other: with the budget full of pieces nobody has
    read, the piece a reader waits for still gets in."""
    budget = MemoryBudget(2 * MiB)
    cache = CacheFile(tmp_path / "c", 8 * MiB, budget=budget)
    assert await cache.accept(4 * MiB, piece(4))
    assert await cache.accept(5 * MiB, piece(5))
    async with trio.open_nursery() as nursery:
        result: list[bytes] = []

        async def reader() -> None:
            result.append(bytes(await cache.read(0, MiB)))

        nursery.start_soon(reader)
        await trio.sleep(0.05)
        with trio.fail_after(2):
            assert await cache.accept(0, piece(0))
    assert result == [piece(0)]
    cache.close()


async def test_keep_holds_bytes_until_they_are_on_disk(tmp_path: Path) -> None:
    """A removed file's readers need every byte: with ``keep`` nothing unwritten is let
    go, even under pressure."""
    budget = MemoryBudget(MiB)
    cache = CacheFile(tmp_path / "c", 2 * MiB, budget=budget)
    cache.keep = True
    assert await cache.accept(0, piece(0))
    assert cache.read_now(0, MiB) is not None
    assert budget.make_room(MiB) is False  # the read piece is kept
    assert cache.filled.covers(0, MiB)
    cache.close()


async def test_a_dropped_copy_stops_its_download(tmp_path: Path) -> None:
    budget = MemoryBudget(MiB)
    cache = CacheFile(tmp_path / "c", 4 * MiB, budget=budget)
    assert await cache.accept(0, piece(0))
    async with trio.open_nursery() as nursery:
        answers: list[bool] = []

        async def blocked() -> None:
            answers.append(await cache.accept(MiB, piece(1)))

        nursery.start_soon(blocked)
        await trio.sleep(0.05)
        cache.close()
    assert answers == [False]
    assert budget.used == 0


async def test_write_buffers_wait_for_room_that_read_ahead_gives_back(tmp_path: Path) -> None:
    budget = MemoryBudget(2 * MiB)
    async with trio.open_nursery() as nursery:
        cache = CacheFile(tmp_path / "c", 2 * MiB, budget=budget, nursery=nursery)
        assert await cache.accept(0, piece(0))
        assert await cache.accept(MiB, piece(1))
        with trio.fail_after(5):  # the write-behind puts them on disk: reclaimable
            await budget.acquire(2 * MiB)
        assert budget.used == 2 * MiB
        assert cache.filled.covers(0, 2 * MiB)  # still readable, from disk
        got = cache.read_now(0, 2 * MiB)
        assert got is not None
        assert bytes(got) == piece(0) + piece(1)
        budget.give(2 * MiB)
        nursery.cancel_scope.cancel()
    cache.close()


@pytest.mark.parametrize("size", [1, 4096, MiB + 1])
async def test_a_read_across_pieces_and_disk_is_joined(tmp_path: Path, size: int) -> None:
    budget = MemoryBudget(8 * MiB)
    async with trio.open_nursery() as nursery:
        cache = CacheFile(tmp_path / "c", 3 * MiB, budget=budget, nursery=nursery)
        await cache.accept(0, piece(0))
        await settle()  # on disk
        await cache.accept(MiB, piece(1))
        whole = piece(0) + piece(1)
        start = MiB - size // 2
        got = cache.read_now(start, size)
        assert got is not None
        assert bytes(got) == whole[start : start + size]
        nursery.cancel_scope.cancel()
    cache.close()


async def test_a_download_follows_a_rename_made_while_it_was_asked(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The GET for the old name arrives after the rename (404): the download asks again
    at the new name instead of failing its readers."""
    client = client_for(emulator, "arc")
    data = bytes(range(256)) * 4096
    src = tmp_path / "src"
    src.write_bytes(data)
    await client.upload("home/alice/old.bin", src, len(data), hashlib.md5(data).hexdigest())  # noqa: S324
    emulator.faults.plan = FaultPlan(latency=0.3, methods=frozenset({"GET"}))
    async with trio.open_nursery() as nursery:
        cache = CacheFile(tmp_path / "c", len(data), nursery=nursery)
        remote = RemoteFile(client, "home/alice/old.bin", cache, nursery)
        got: list[bytes] = []

        async def read() -> None:
            got.append(bytes(await remote.read(0, len(data))))

        nursery.start_soon(read)
        await trio.sleep(0.1)  # the GET of old.bin is on its way, held by the latency
        emulator.faults.plan = FaultPlan()
        await client.move("home/alice/old.bin", "home/alice/new.bin")
        remote.rename("home/alice/new.bin")
    assert got == [data]
    cache.close()
    await client.http.aclose()


async def test_overlapping_downloads_give_back_what_they_did_not_store(tmp_path: Path) -> None:
    """A piece that waited for room while another download brought part of its range
    stores only the rest, and gives the budget back the difference (else the budget
    would shrink for good)."""
    budget = MemoryBudget(2 * MiB)
    cache = CacheFile(tmp_path / "c", 3 * MiB, budget=budget)  # memory only
    assert await cache.accept(0, piece(0))
    async with trio.open_nursery() as nursery:
        got: list[bytes] = []

        async def big() -> None:  # [1, 3) MiB does not fit beside [0, 1)
            assert await cache.accept(MiB, piece(1) + piece(2))

        async def reader() -> None:
            got.append(bytes(await cache.read(MiB, MiB)))

        nursery.start_soon(big)
        await trio.sleep(0.05)
        assert await cache.accept(2 * MiB, piece(2))  # the other download: it fits
        nursery.start_soon(reader)  # now [1, 2) is wanted: the big piece is let in
    assert got == [piece(1)]
    for offset in (0, 2 * MiB):  # read the rest: memory only, so each piece goes
        assert cache.read_now(offset, MiB) is not None
    assert budget.used == 0
    cache.close()


async def test_a_memory_only_copy_gives_its_read_ahead_back_when_its_last_reader_goes(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A file bigger than the cache, read ahead and then closed unread: its pieces
    would hold the mount's budget until eviction; they are let go at once."""
    budget = MemoryBudget(8 * MiB)
    client = client_for(emulator, "arc")
    async with trio.open_nursery() as nursery:
        cache = CacheFile(tmp_path / "c", 4 * MiB, budget=budget, write_to_disk=False)
        remote = RemoteFile(client, "home/alice/none.bin", cache, nursery).use()
        assert await cache.accept(0, piece(0))
        assert await cache.accept(MiB, piece(1))
        assert budget.used == 2 * MiB
        remote.release()
        assert budget.used == 0
        assert not cache.filled.covers(0, 1)  # asked for again by a later reader
        nursery.cancel_scope.cancel()
    cache.close()
    await client.http.aclose()
