"""Warm-up, pinning and eviction (docs/semantics.md, *Warm-up and pinning*) in the storage
core against the in-process emulator: the control file's commands, what is fetched,
what a read then asks of the server, what survives a restart, and the refusals."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import trio

from canfarfs import errors
from canfarfs.emulator.app import Emulator
from canfarfs.fs.control import ControlHandle, status_document
from canfarfs.fs.meta import Key
from canfarfs.fs.storage import Storage
from canfarfs.vospace.model import NodeType
from tests.core.test_semantics_core import at, elsewhere, read_all
from tests.storage_util import MakeStorage
from tests.vospace_util import client_for

pytestmark = pytest.mark.semantics("Warm-up and pinning")
SERVICES = ["arc", "vault"]
HOME = {"arc": "home/alice", "vault": "alice"}


async def control(storage: Storage, text: str) -> None:
    """Write ``text`` to the control file and close it, as the CLI does."""
    handle = ControlHandle(storage, b"")
    await handle.write(0, text.encode())
    await handle.flush()


async def run(storage: Storage, action: str, *keys: Key, job: str = "j") -> dict[str, Any]:
    """A warm-up job to its end; its entry in the status document."""
    lines = [f"job {job}"] + [f"{action} {k[0]}/{k[1]}" for k in keys]
    await control(storage, "\n".join(lines) + "\n")
    j = storage.warmups.job(job)
    if j is not None:
        with trio.fail_after(20):
            await j.ended.wait()
    doc = status_document(storage, mountpoint="/m", started=0.0)
    json.dumps(doc)  # the document stays JSON
    entry: dict[str, Any] = next(w for w in doc["warmups"] if w["id"] == job)
    return entry


async def tree(emulator: Emulator, tmp_path: Path, service: str, files: dict[str, bytes]) -> Key:
    """A directory ``raw`` holding ``files`` (names may hold one subdirectory)."""
    client = client_for(emulator, service)
    root = at(service, "raw")
    await client.create_node(root[1], NodeType.CONTAINER)
    for sub in {n.rpartition("/")[0] for n in files if "/" in n}:
        await client.create_node(f"{root[1]}/{sub}", NodeType.CONTAINER)
    for name, data in files.items():
        await elsewhere(emulator, tmp_path, (service, f"{root[1]}/{name}"), data)
    return root


FILES = {f"f{i}.dat": bytes([i]) * (1000 * i + 1) for i in range(6)} | {
    "sub/deep.fits": b"deep" * 5000
}


@pytest.mark.parametrize("service", SERVICES)
async def test_a_warmed_tree_is_read_without_a_request(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path, service: str
) -> None:
    root = await tree(emulator, tmp_path, service, FILES)
    async with make_storage(meta_ttl=60) as storage:
        job = await run(storage, "warmup", root)
        assert job["state"] == "done", job
        assert job["files"] == len(FILES)
        assert job["bytes"] == sum(len(d) for d in FILES.values())
        assert job["fetched_bytes"] == job["bytes"] == job["done_bytes"]
        assert job["failed"] == []
        assert job["cached_files"] == 0
        before, fetched = emulator.faults.requests, storage.reads.totals.fetched
        for name, data in FILES.items():
            assert await read_all(storage, (service, f"{root[1]}/{name}")) == data
        assert emulator.faults.requests == before  # listings and bytes from the cache
        assert storage.reads.totals.fetched == fetched
        again = await run(storage, "warmup", root, job="again")  # nothing new to fetch
        assert again["cached_files"] == len(FILES)
        assert again["fetched_bytes"] == 0


async def test_a_file_changed_on_the_server_is_fetched_again_and_read_new(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    root = await tree(emulator, tmp_path, "arc", {"a.txt": b"old bytes", "b.txt": b"same"})
    key = (root[0], f"{root[1]}/a.txt")
    async with make_storage(meta_ttl=60) as storage:
        await run(storage, "warmup", root, job="1")
        assert await read_all(storage, key) == b"old bytes"
        await elsewhere(emulator, tmp_path, key, b"new bytes, longer")
        second = await run(storage, "warmup", root, job="2")  # lists afresh
        assert (second["cached_files"], second["fetched_bytes"]) == (1, len(b"new bytes, longer"))
        before = emulator.faults.requests
        # Within the TTL of the listing that shows the change: the new bytes, no request.
        assert await read_all(storage, key) == b"new bytes, longer"
        assert emulator.faults.requests == before
        listed = dict(await storage.listdir(root))
        assert listed["a.txt"].length == len(b"new bytes, longer")


async def test_a_read_never_serves_a_copy_older_than_the_listing(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    """The listing shows the change (it expired and was asked again): a read of the
    warmed file gets the new bytes at once, not the cached copy."""
    root = await tree(emulator, tmp_path, "vault", {"a.txt": b"version one"})
    key = (root[0], f"{root[1]}/a.txt")
    async with make_storage(meta_ttl=0.3) as storage:
        await run(storage, "pin", root)
        await elsewhere(emulator, tmp_path, key, b"version two!")
        await trio.sleep(0.4)
        listed = dict(await storage.listdir(root))
        assert listed["a.txt"].length == len(b"version two!")
        assert await read_all(storage, key) == b"version two!"


@pytest.mark.parametrize("service", SERVICES)
async def test_pinned_copies_survive_a_restart(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path, service: str
) -> None:
    root = await tree(emulator, tmp_path, service, FILES)
    other = at(service, "unpinned.txt")
    await elsewhere(emulator, tmp_path, other, b"not pinned")
    cache_dir = tmp_path / "cache"
    async with make_storage(cache_dir=cache_dir) as storage:
        job = await run(storage, "pin", root)
        assert job["state"] == "done"
        assert job["files"] == len(FILES)
        assert await read_all(storage, other) == b"not pinned"
        doc = status_document(storage, mountpoint="/m", started=0.0)
        assert doc["pinned"] == {
            "paths": [f"{root[0]}/{root[1]}"],
            "files": len(FILES),
            "bytes": sum(len(d) for d in FILES.values()),
        }
        storage.close()
    index = json.loads((cache_dir / "index.json").read_text())
    assert index["pins"] == [[root[0], root[1]]]
    assert len(index["copies"]) == len(FILES)
    async with make_storage(cache_dir=cache_dir) as storage:
        await storage.recover()  # removes unindexed cache files, keeps the pinned ones
        assert len(list((cache_dir / "data").iterdir())) == len(FILES)
        for name, data in FILES.items():
            assert await read_all(storage, (service, f"{root[1]}/{name}")) == data
        assert storage.reads.totals.fetched == 0  # metadata asked again, no bytes
        assert await read_all(storage, other) == b"not pinned"
        assert storage.reads.totals.fetched == len(b"not pinned")
        storage.close()


async def test_after_a_restart_a_changed_pinned_file_is_fetched_again(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    root = await tree(emulator, tmp_path, "arc", {"a.txt": b"before restart"})
    key = (root[0], f"{root[1]}/a.txt")
    cache_dir = tmp_path / "cache"
    async with make_storage(cache_dir=cache_dir) as storage:
        await run(storage, "pin", root)
        storage.close()
    await elsewhere(emulator, tmp_path, key, b"changed while unmounted")
    async with make_storage(cache_dir=cache_dir) as storage:
        await storage.recover()
        assert await read_all(storage, key) == b"changed while unmounted"
        assert storage.reads.totals.fetched == len(b"changed while unmounted")
        storage.close()


async def test_pinned_files_are_read_during_an_outage_after_a_restart(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    """The index holds the pinned tree's listings: while the service is marked down (as
    after a time-out), the next mount answers from them and serves the kept bytes, asking
    nothing (in process, the emulator's outage fails any request outright)."""
    root = await tree(emulator, tmp_path, "vault", {"a.txt": b"kept for the train"})
    cache_dir = tmp_path / "cache"
    async with make_storage(cache_dir=cache_dir) as storage:
        await run(storage, "pin", root)
        storage.close()
    async with make_storage(cache_dir=cache_dir, mount_timeout=2.0) as storage:
        await storage.recover()
        emulator.faults.plan.outage_until = trio.current_time() + 3600
        storage.mark_down("vault", errors.Timeout("the link is down"))
        try:
            names = [n for n, _ in await storage.listdir(root)]
            assert names == ["a.txt"]
            key = (root[0], f"{root[1]}/a.txt")
            assert await read_all(storage, key) == b"kept for the train"
            assert storage.reads.totals.fetched == 0
        finally:
            emulator.faults.reset()
        storage.close()


async def test_evict_unpins_and_drops(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    root = await tree(emulator, tmp_path, "arc", {"a.txt": b"a" * 100, "b.txt": b"b" * 50})
    cache_dir = tmp_path / "cache"
    async with make_storage(cache_dir=cache_dir) as storage:
        await run(storage, "pin", root, job="pin")
        job = await run(storage, "evict", root, job="evict")
        assert (job["state"], job["files"], job["bytes"]) == ("done", 2, 150)
        assert storage.reads.pins.roots == set()
        assert storage.reads.used() == 0
        assert not list((cache_dir / "data").iterdir())
        doc = status_document(storage, mountpoint="/m", started=0.0)
        assert doc["pinned"] == {"paths": [], "files": 0, "bytes": 0}
        storage.close()
    assert json.loads((cache_dir / "index.json").read_text())["copies"] == []


async def test_pinned_copies_are_never_evicted(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    root = await tree(emulator, tmp_path, "arc", {"pinned.bin": b"p" * 3000})
    others = [at("arc", f"other{i}") for i in range(5)]
    for key in others:
        await elsewhere(emulator, tmp_path, key, b"o" * 3000)
    async with make_storage(cache_size=8000) as storage:
        await run(storage, "pin", root)
        for key in others:  # each read evicts the least recently used unpinned copy
            await read_all(storage, key)
        # Evicted as each new copy is made: at most the newest one over the budget.
        assert storage.reads.used() <= 8000 + 3000
        assert len(storage.reads.copies) + len(storage.reads.stored) < 6
        before = storage.reads.totals.fetched
        assert await read_all(storage, (root[0], f"{root[1]}/pinned.bin")) == b"p" * 3000
        assert storage.reads.totals.fetched == before


async def test_pinning_more_than_the_cache_size_is_refused(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    root = await tree(emulator, tmp_path, "arc", {"a": b"a" * 3000, "b": b"b" * 3000})
    async with make_storage(cache_size=5000) as storage:
        job = await run(storage, "pin", root)
        assert job["state"] == "failed"
        assert job["error"].startswith("ENOSPC: pinned files would take 6000 bytes")
        assert storage.reads.pins.roots == set()
        assert job["fetched_bytes"] == 0
        big = await run(storage, "warmup", root, job="big")  # not pinned: allowed
        assert big["state"] == "done"
        assert big["failed"] == []


async def test_a_file_bigger_than_the_cache_fails_with_efbig(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    root = await tree(emulator, tmp_path, "vault", {"big": b"x" * 9000, "small": b"s"})
    async with make_storage(cache_size=5000) as storage:
        job = await run(storage, "warmup", root)
        assert job["state"] == "done"
        assert [(f["path"], f["errno"]) for f in job["failed"]] == [
            (f"vault/{root[1]}/big", "EFBIG")
        ]
        assert job["done_files"] == 2
        assert job["fetched_bytes"] == 1


async def test_missing_paths_fail_the_job_and_bad_commands_are_refused(
    storage: Storage, emulator: Emulator, tmp_path: Path
) -> None:
    job = await run(storage, "warmup", at("arc", "nothing-here"))
    assert job["state"] == "done"
    assert job["failed"][0]["errno"] == "ENOENT"
    for text, why in [
        ("warmup sessions/x\n", "only files under arc/ and vault/"),
        ("warmup\n", "needs an argument"),
        ("frobnicate arc/x\n", "unknown control command"),
        ("warmup arc/x\nevict arc/y\n", "one of warmup, pin or evict"),
        ("warmup arc/../x\n", "without '..'"),
        ("cancel nope\n", "no warm-up job"),
    ]:
        with pytest.raises(errors.CanfarfsError, match=why) as info:
            await control(storage, text)
        assert errors.errno_for(info.value) in (errno.EINVAL, errno.ENOENT)


async def test_a_pinned_tree_renamed_here_stays_pinned_under_its_new_name(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    """``mv raw obs-2026`` of a pinned tree: the pin follows, and after a restart the
    tree is read from the kept copies under the new name, nothing fetched."""
    root = await tree(emulator, tmp_path, "arc", {"a.txt": b"pinned bytes", "s/b.txt": b"b"})
    renamed = at("arc", "obs-2026")
    cache_dir = tmp_path / "cache"
    async with make_storage(cache_dir=cache_dir) as storage:
        await run(storage, "pin", root)
        await storage.rename(root, renamed)
        assert status_document(storage, mountpoint="/m", started=0.0)["pinned"]["paths"] == [
            f"arc/{renamed[1]}"
        ]
        storage.close()
    index = json.loads((cache_dir / "index.json").read_text())
    assert index["pins"] == [list(renamed)]
    async with make_storage(cache_dir=cache_dir) as storage:
        await storage.recover()
        assert await read_all(storage, ("arc", f"{renamed[1]}/a.txt")) == b"pinned bytes"
        assert await read_all(storage, ("arc", f"{renamed[1]}/s/b.txt")) == b"b"
        assert storage.reads.totals.fetched == 0
        storage.close()


async def test_a_warm_up_bigger_than_the_cache_says_what_it_could_not_keep(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    """60 files of 1,000 bytes through a 10,000-byte cache: the later copies evict the
    earlier ones; the job counts exactly the files no longer cached (the command then
    says so and exits 1)."""
    files = {f"f{i:02}": bytes([i]) * 1000 for i in range(60)}
    root = await tree(emulator, tmp_path, "arc", files)
    async with make_storage(cache_size=10_000) as storage:
        job = await run(storage, "warmup", root)
        assert job["state"] == "done"
        assert job["failed"] == []
        kept = sum(
            storage.reads.complete((root[0], f"{root[1]}/{name}"), f"{md5}:1000:")
            for name, md5 in (
                (n, hashlib.md5(d).hexdigest())  # noqa: S324 - the protocol's checksum
                for n, d in files.items()
            )
        )
        assert job["evicted_files"] == 60 - kept > 0
        assert job["evicted_bytes"] == 1000 * job["evicted_files"]
