"""The FUSE-free storage core, in-process against the emulator: what it holds stays
bounded over a long-running mount (the soak's findings, docs/reliability.md)."""

from __future__ import annotations

import hashlib
import resource
from pathlib import Path

import pytest
import trio

from canfarfs.daemon import tune_process
from canfarfs.emulator.app import Emulator
from canfarfs.fs import readcache
from canfarfs.fs.meta import MetaCache
from canfarfs.fs.storage import Storage, StorageConfig
from canfarfs.vospace.model import Node, NodeType
from tests.vospace_util import client_for


async def test_the_metadata_cache_forgets_deleted_paths() -> None:
    cache = MetaCache(ttl=5.0, negative_ttl=5.0, keep_stale=60.0)
    for i in range(3000):  # deleted and renamed paths are remembered as "not there"
        cache.put(("arc", f"home/alice/gone-{i}"), None)
    alive = Node(uri="vos://cadc.nrc.ca~arc/home/alice/kept", type=NodeType.DATA)
    cache.put(("arc", "home/alice/kept"), alive)
    cache.sweep(trio.current_time() + 6.0)
    assert list(cache.nodes) == [("arc", "home/alice/kept")]  # a stale node outlives its TTL
    cache.sweep(trio.current_time() + 61.0)
    assert cache.nodes == {}


async def test_puts_sweep_on_their_own() -> None:
    cache = MetaCache(ttl=5.0, negative_ttl=0.0)
    for i in range(5000):
        cache.put(("vault", f"alice/tmp-{i}"), None)
    assert len(cache.nodes) < 1100  # swept every 1024 writes


async def test_cached_copies_are_capped_in_number(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each cached copy holds a descriptor: reading many files must not run out of them."""
    monkeypatch.setattr(readcache, "MAX_CACHED_FILES", 8)
    client = client_for(emulator, "arc")
    for i in range(30):
        src = tmp_path / f"f{i}"
        src.write_bytes(b"x" * (i + 1))
        await client.upload(
            f"home/alice/f{i}",
            src,
            i + 1,
            hashlib.md5(src.read_bytes()).hexdigest(),  # noqa: S324
        )
    async with trio.open_nursery() as nursery:
        storage = Storage(
            {"arc": client}, StorageConfig(cache_dir=tmp_path / "cache", user="alice"), nursery
        )
        for i in range(30):
            handle = await storage.open_read(("arc", f"home/alice/f{i}"))
            assert handle.file.stage is None
            assert await handle.read(0, 100) == b"x" * (i + 1)
            await handle.release()
            assert len(storage.reads.copies) <= 9
        nursery.cancel_scope.cancel()


def test_the_daemon_raises_its_open_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        tune_process()
        now, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        assert now == want
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_reading_through_an_expired_listing_of_a_few_pages_relists_it_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    """``cp -r`` out of a directory whose listing expired mid-copy: one relisting (vault
    pages of 5 entries here) instead of a node request per file."""
    client = client_for(emulator, "vault", page_size=5)
    await client.create_node("alice/many", NodeType.CONTAINER)
    names = [f"f{i:02d}" for i in range(12)]
    for name in names:
        await client.create_node(f"alice/many/{name}", NodeType.DATA)
    async with trio.open_nursery() as nursery:
        storage = Storage(
            {"vault": client},
            # The TTL counts from before the listing's three pages were fetched: long
            # enough for a loaded machine (0.05 s failed in CI), short for the test.
            StorageConfig(
                cache_dir=tmp_path / "cache", user="alice", meta_ttl=1.0, negative_ttl=1.0
            ),
            nursery,
        )
        await storage.listdir(("vault", "alice/many"))
        listing = client.http.sent
        await storage.listdir(("vault", "alice/many"))
        assert client.http.sent == listing  # fresh: no request
        await trio.sleep(1.1)  # the listing and its nodes expire
        before = client.http.sent
        await client.get_node("alice/many")  # what one page costs, for comparison
        page = client.http.sent - before
        before = client.http.sent
        for name in names:
            assert (await storage.node(("vault", f"alice/many/{name}"))).name == name
        pages = client.http.sent - before
        nursery.cancel_scope.cancel()
    assert page == 1
    assert 3 <= pages < len(names)  # a relisting of three pages, not one per file
