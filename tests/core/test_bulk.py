"""Worker-thread downloads (canfarfs.bulk) and the vault read-ahead that uses them,
against the emulator served on a loopback socket in this process, with its faults."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path

import httpx2
import pytest
import trio

from canfarfs import errors
from canfarfs.bulk import BulkGetter, Declined
from canfarfs.emulator.app import Emulator
from canfarfs.emulator.faults import FaultPlan
from canfarfs.emulator.server import serve_emulator
from canfarfs.fs.cachefile import CacheFile
from canfarfs.fs.remote_file import RemoteFile
from canfarfs.net import HTTP, Credentials, RetryPolicy
from canfarfs.vospace.client import VOSpaceClient
from tests.emulator_util import TOKEN

MiB = 1024 * 1024
Getters = Callable[..., BulkGetter]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def served(emulator: Emulator) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(serve_emulator, emulator, "127.0.0.1", 0)
        yield url
        nursery.cancel_scope.cancel()


def payload(size: int) -> bytes:
    return hashlib.sha256(b"seed").digest() * (size // 32) + b"x" * (size % 32)


async def put(url: str, path: str, data: bytes) -> None:
    async with httpx2.AsyncClient(headers=AUTH) as c:
        r = await c.put(f"{url}/arc/files/{path}", content=data)
        assert r.status_code in (200, 201), r.text


def vault_client(url: str, bulk: BulkGetter | None = None) -> VOSpaceClient:
    http = HTTP(httpx2.AsyncClient(), Credentials(token=TOKEN), retry=RetryPolicy(base_delay=0.001))
    http.bulk = bulk
    return VOSpaceClient(http, f"{url}/vault", "vault")


async def put_vault(url: str, path: str, data: bytes, tmp_path: Path) -> str:
    """Store ``data`` in vault (minoc, which honours ranges); return its byte URL."""
    src = tmp_path / "src"
    src.write_bytes(data)
    client = vault_client(url)
    try:
        await client.upload(path, src, len(data), hashlib.md5(data).hexdigest())  # noqa: S324
        loc = await client.locate(path, len(data))
    finally:
        await client.http.aclose()
    assert loc is not None
    assert loc.ranges
    return loc.url


@pytest.fixture
def getters() -> Iterator[Getters]:
    """BulkGetters closed after the test (their idle connections included)."""
    made: list[BulkGetter] = []

    def make(read_timeout: float = 5.0, threads: int = 8) -> BulkGetter:
        made.append(
            BulkGetter(
                ssl_context=None, connect_timeout=5.0, read_timeout=read_timeout, threads=threads
            )
        )
        return made[-1]

    yield make
    for g in made:
        g.close()


class Sink:
    """What ``accept`` was handed, gathered in a buffer; ``stop_after`` pieces it says
    stop."""

    def __init__(self, stop_after: int | None = None) -> None:
        """``stop_after``: the piece of this number (from 1) and later are refused."""
        self.buf = bytearray()
        self.pieces: list[tuple[int, int]] = []
        self.stop_after = stop_after

    async def __call__(self, pos: int, data: bytes) -> bool:
        end = pos + len(data)
        if len(self.buf) < end:
            self.buf.extend(bytes(end - len(self.buf)))
        self.buf[pos:end] = data
        self.pieces.append((pos, end))
        return self.stop_after is None or len(self.pieces) < self.stop_after

    def covered(self) -> int:
        return sum(e - s for s, e in self.pieces)


async def test_a_body_is_handed_over_whole_in_order(getters: Getters, served: str) -> None:
    data = payload(5 * MiB + 123)
    await put(served, "home/alice/big.bin", data)
    sink = Sink()
    end = await getters().get_into(
        f"{served}/arc/files/home/alice/big.bin", AUTH, 0, sink, ranged=False
    )
    assert end == len(data)
    assert bytes(sink.buf) == data
    assert sink.covered() == len(data)
    assert sink.pieces[0][0] == 0
    assert all(e - s <= MiB for s, e in sink.pieces)  # a MiB at a time


async def test_ranges_arrive_at_their_offset_and_connections_are_reused(
    getters: Getters, served: str, emulator: Emulator, tmp_path: Path
) -> None:
    data = payload(3 * MiB)
    loc = await put_vault(served, "alice/r.bin", data, tmp_path)
    sink = Sink()
    g = getters()
    for start in (2 * MiB, 0, MiB):
        headers = {"Range": f"bytes={start}-{start + MiB - 1}"}
        end = await g.get_into(loc, headers, start, sink, ranged=True)
        assert end == start + MiB
    assert bytes(sink.buf) == data
    assert sum(len(idle) for idle in g._idle.values()) == 1  # one connection, kept alive


async def test_an_unexpected_status_is_handed_back(getters: Getters, served: str) -> None:
    result = await getters().get_into(
        f"{served}/arc/files/home/alice/none.bin", AUTH, 0, Sink(), ranged=False
    )
    denied = await getters().get_into(
        f"{served}/arc/files/home/alice/none.bin", {}, 0, Sink(), ranged=False
    )
    assert result == Declined(404)
    assert isinstance(denied, Declined)
    assert denied.status in (401, 403)


async def test_a_cut_body_raises_after_handing_over_what_arrived(
    getters: Getters, served: str, emulator: Emulator
) -> None:
    data = payload(4 * MiB)
    await put(served, "home/alice/cut.bin", data)
    emulator.faults.plan = FaultPlan(drop_next=1, drop_after=MiB + 5, methods=frozenset({"GET"}))
    sink = Sink()
    with pytest.raises(errors.CanfarfsError) as exc:
        await getters().get_into(
            f"{served}/arc/files/home/alice/cut.bin", AUTH, 0, sink, ranged=False
        )
    assert isinstance(exc.value, errors.Unavailable)
    assert MiB <= sink.covered() <= MiB + 5  # resumable from there
    assert bytes(sink.buf) == data[: sink.covered()]


async def test_a_silent_server_times_out_within_the_bound(
    getters: Getters, served: str, emulator: Emulator
) -> None:
    await put(served, "home/alice/slow.bin", b"abc")
    emulator.faults.plan = FaultPlan(latency=30.0)
    started = time.monotonic()
    with pytest.raises(errors.Timeout, match=r"no data from server for 0\.5 s"):
        await getters(read_timeout=0.5).get_into(
            f"{served}/arc/files/home/alice/slow.bin", AUTH, 0, Sink(), ranged=False
        )
    assert time.monotonic() - started < 10  # bounded, not the 30 s the server sits on it


async def test_cancelling_the_caller_frees_the_thread_at_once(
    getters: Getters, served: str, emulator: Emulator
) -> None:
    await put(served, "home/alice/stuck.bin", b"abc")
    emulator.faults.plan = FaultPlan(latency=30.0)
    g = getters(read_timeout=60.0, threads=1)
    with trio.move_on_after(0.3) as scope:
        await g.get_into(f"{served}/arc/files/home/alice/stuck.bin", AUTH, 0, Sink(), ranged=False)
    assert scope.cancelled_caught
    with trio.fail_after(5):  # the one thread gave its token back: it has returned
        async with g.limiter:
            pass


async def test_a_consumer_that_waits_holds_the_download_back(getters: Getters, served: str) -> None:
    """``accept`` may take its time (memory is full): the thread waits for it, and no
    byte is lost or handed over twice."""
    data = payload(6 * MiB)
    await put(served, "home/alice/slow-consumer.bin", data)
    sink = Sink()
    calls = 0

    async def slow(pos: int, piece: bytes) -> bool:
        nonlocal calls
        calls += 1
        await trio.sleep(0.05)
        return await sink(pos, piece)

    started = trio.current_time()
    end = await getters().get_into(
        f"{served}/arc/files/home/alice/slow-consumer.bin", AUTH, 0, slow, ranged=False
    )
    assert end == len(data)
    assert bytes(sink.buf) == data
    assert trio.current_time() - started >= 0.05 * calls


async def test_sequential_vault_reads_keep_large_requests_in_flight(
    getters: Getters, served: str, emulator: Emulator, tmp_path: Path
) -> None:
    """The read-ahead tops up before it runs dry: a 48 MiB sequential read in 1 MiB
    pieces is served by a few large ranged GETs, not one per piece, and no piece waits on
    a window that was never asked for."""
    size = 48 * MiB
    data = payload(size)
    await put_vault(served, "alice/seq.bin", data, tmp_path)
    client = vault_client(served, getters())
    async with trio.open_nursery() as nursery:
        cache = CacheFile(tmp_path / "cache", size)
        remote = RemoteFile(client, "alice/seq.bin", cache, nursery, part_size=8 * MiB)
        before = emulator.faults.by_method.get("GET", 0)
        got = bytearray()
        for offset in range(0, size, MiB):
            got += await remote.read(offset, MiB)
        gets = emulator.faults.by_method.get("GET", 0) - before
        nursery.cancel_scope.cancel()
    cache.close()
    await client.http.aclose()
    assert bytes(got) == data
    assert remote.fetched == size  # nothing twice
    # 1 + 2 + 4 + 8 + 16 MiB then 8 MiB parts, plus the redirect: far fewer than 48.
    assert gets <= 16, gets


async def test_a_stopped_copy_returns_quietly_where_it_stopped(
    getters: Getters, served: str
) -> None:
    """``accept`` answering False (the cache copy was dropped) ends the copy without
    an error."""
    data = payload(8 * MiB)
    await put(served, "home/alice/stop.bin", data)
    sink = Sink(stop_after=2)  # takes the first piece, refuses the second
    end = await getters().get_into(
        f"{served}/arc/files/home/alice/stop.bin", AUTH, 0, sink, ranged=False
    )
    assert end == sink.pieces[0][1] < len(data)  # what was taken, nothing after
    assert bytes(sink.buf[:end]) == data[:end]


async def test_cancelled_downloads_give_their_threads_back(
    getters: Getters, served: str, emulator: Emulator
) -> None:
    """One download holds the only thread; a second, cancelled while it waits for a
    thread, and then the first, cancelled mid-request, both return."""
    await put(served, "home/alice/held.bin", b"abc")
    emulator.faults.plan = FaultPlan(latency=30.0)
    g = getters(read_timeout=60.0, threads=1)
    url = f"{served}/arc/files/home/alice/held.bin"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(g.get_into, url, AUTH, 0, Sink(), ranged=False))
        await trio.sleep(0.2)
        with trio.move_on_after(0.2) as waiting:
            await g.get_into(url, AUTH, 0, Sink(), ranged=False)
        assert waiting.cancelled_caught
        nursery.cancel_scope.cancel()
    with trio.fail_after(5):
        async with g.limiter:  # the first thread has returned
            pass
