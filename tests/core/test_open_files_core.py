"""One state per open file, in process against the emulator, without a kernel mount
(docs/semantics.md, "Several handles on one file"); and background failures that stay
contained (canfarfs/tasks.py)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from canfarfs import errors
from canfarfs.emulator.app import Emulator
from canfarfs.emulator.faults import FaultPlan
from canfarfs.fs import storage as storage_mod
from canfarfs.fs.staging import Stage
from canfarfs.fs.storage import Storage
from canfarfs.tasks import spawn


def key(name: str) -> tuple[str, str]:
    return ("arc", f"home/alice/{name}")


async def server_bytes(storage: Storage, name: str) -> bytes:
    handle = await storage.open_read(key(name))
    try:
        return await handle.read(0, 1 << 20)
    finally:
        await handle.release()


async def write_file(storage: Storage, name: str, data: bytes) -> None:
    handle = await storage.open_write(key(name), truncate=True, create=True)
    await handle.write(0, data)
    await handle.flush()
    await handle.release()


@pytest.mark.semantics("Several handles on one file")
async def test_two_writers_share_one_staged_copy_and_the_close_uploads_both(
    storage: Storage,
) -> None:
    await write_file(storage, "shared", b"." * 10)
    a, b = (
        await storage.open_write(key("shared"), truncate=False, create=False),
        await storage.open_write(key("shared"), truncate=False, create=False),
    )
    assert a.file is b.file
    assert a.file.stage is not None
    await a.write(0, b"AAAAA")
    await b.write(5, b"BBBBB")
    await a.flush()
    await a.release()
    await b.release()
    assert storage.files == {}
    assert storage.stages == {}
    storage.meta.forget(key("shared"))
    assert await server_bytes(storage, "shared") == b"AAAAABBBBB"


@pytest.mark.semantics("Several handles on one file")
async def test_two_opens_at_once_make_one_staged_copy(storage: Storage) -> None:
    await write_file(storage, "raced", b"r" * 100_000)
    handles = []

    async def opener() -> None:
        handles.append(await storage.open_write(key("raced"), truncate=False, create=False))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(opener)
    assert len({id(h.file.stage) for h in handles}) == 1
    for h in handles:
        await h.release()
    assert not any((storage.staging_dir).iterdir())


@pytest.mark.semantics("Several handles on one file")
async def test_a_reader_sees_a_writers_bytes_at_once(storage: Storage) -> None:
    await write_file(storage, "seen", b"old!")
    reader = await storage.open_read(key("seen"))
    assert await reader.read(0, 10) == b"old!"
    writer = await storage.open_write(key("seen"), truncate=False, create=False)
    await writer.write(4, b" and new")
    assert await reader.read(0, 20) == b"old! and new"
    await writer.flush()
    await writer.release()
    assert await reader.read(0, 20) == b"old! and new"  # the uploaded copy, still held
    await reader.release()


@pytest.mark.semantics("Several handles on one file")
async def test_unlink_and_rename_over_leave_open_handles_their_bytes(storage: Storage) -> None:
    await write_file(storage, "victim", b"v" * 3000)
    await write_file(storage, "other", b"o" * 10)
    reader = await storage.open_read(key("victim"))
    await storage.rename(key("other"), key("victim"))
    assert await reader.read(0, 5000) == b"v" * 3000
    assert reader.file.unlinked
    await reader.release()
    assert await server_bytes(storage, "victim") == b"o" * 10
    writer = await storage.open_write(key("victim"), truncate=False, create=False)
    await storage.unlink(key("victim"))
    await writer.write(10, b"!")
    await writer.flush()  # nothing to upload: the file is gone
    assert await writer.read(0, 20) == b"o" * 10 + b"!"
    await writer.release()
    with pytest.raises(errors.NotFound):
        await storage.node(key("victim"))
    assert storage.files == {}
    assert not any(storage.staging_dir.iterdir())


@pytest.mark.semantics("Writing and durability")
async def test_a_refused_unlink_keeps_the_pending_bytes(storage: Storage) -> None:
    """A refusal never discards data: the staged bytes stay pending (vault keeps locks)."""
    locked = ("vault", "alice/locked")
    writer = await storage.open_write(locked, truncate=True, create=True)
    await writer.write(0, b"first")
    await writer.flush()
    await storage.setxattr(locked, "islocked", b"true")
    await writer.write(5, b" second")
    with pytest.raises(errors.CanfarfsError):
        await writer.flush()
    with pytest.raises(errors.CanfarfsError):
        await storage.unlink(locked)
    await writer.release()
    assert [s.path for s in storage.pending()] == ["alice/locked"]
    reader = await storage.open_read(locked)  # what ls -l says is what cat reads
    assert (await storage.attr(locked)).size == len(b"first second")
    assert await reader.read(0, 100) == b"first second"
    await reader.release()
    assert await storage.sync() != []  # still locked: still pending, still reported
    await storage.setxattr(locked, "islocked", b"false")
    assert await storage.sync() == []
    assert storage.pending() == []
    storage.meta.forget(locked)
    reader = await storage.open_read(locked)
    assert await reader.read(0, 100) == b"first second"
    await reader.release()


@pytest.mark.semantics("Errno table")
async def test_truncate_beyond_the_staging_limit_is_efbig(storage: Storage) -> None:
    await write_file(storage, "big", b"x")
    handle = await storage.open_write(key("big"), truncate=False, create=False)
    with pytest.raises(errors.FileTooBig):
        await handle.truncate(999_999_999_999_999)
    assert await handle.read(0, 10) == b"x"
    await handle.release()


async def test_a_failing_background_task_is_logged_and_reported_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[BaseException] = []

    async def broken() -> None:
        await trio.lowlevel.checkpoint()
        raise RuntimeError("boom")

    with caplog.at_level(logging.WARNING):
        async with trio.open_nursery() as nursery:
            spawn(nursery, broken, what="the broken task", on_error=seen.append)
            spawn(nursery, broken, what="the unreported task")
    assert [str(e) for e in seen] == ["boom"]
    failures = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.exc_info is not None for r in failures)  # logged with its traceback


async def test_a_broken_hashing_thread_falls_back_to_hashing_the_file(tmp_path: Path) -> None:
    """The running MD5 is a background task: if it fails, the upload hashes again."""
    async with trio.open_nursery() as nursery:
        stage = Stage(tmp_path, "arc", "home/alice/h", nursery=nursery)
        stage._md5 = object()  # an MD5 object whose update raises AttributeError
        data = b"hash me" * 20_000  # past HASH_INLINE: hashed in the thread
        await stage.write(0, data)
        assert await stage.md5() == hashlib.md5(data).hexdigest()  # noqa: S324
        stage.dispose()


@pytest.mark.parametrize(
    ("refusal", "refuses_delete"),
    [
        pytest.param(FaultPlan(fail_rate=1.0, fail_status=503), True, id="unreachable"),
        pytest.param(
            FaultPlan(fail_rate=1.0, fail_status=413, methods=frozenset({"PUT"})), False, id="quota"
        ),  # a quota refuses no delete
        pytest.param(
            FaultPlan(fail_rate=1.0, fail_status=403, methods=frozenset({"PUT", "DELETE"})),
            True,
            id="permission",
        ),
    ],
)
@pytest.mark.semantics("Writing and durability")
async def test_a_refused_upload_and_unlink_keep_the_pending_bytes(
    storage: Storage, emulator: Emulator, refusal: FaultPlan, refuses_delete: bool
) -> None:
    """Each refusal path of close() and rm: the bytes stay pending, then go up."""
    key_ = ("vault", "alice/refused")
    writer = await storage.open_write(key_, truncate=True, create=True)
    await writer.write(0, b"kept")
    await writer.flush()
    await writer.write(4, b" and more")
    emulator.faults.plan = refusal
    with pytest.raises(errors.CanfarfsError):
        await writer.flush()
    if refuses_delete:
        with pytest.raises(errors.CanfarfsError):
            await storage.unlink(key_)
    await writer.release()
    assert [s.path for s in storage.pending()] == ["alice/refused"]
    emulator.faults.reset()
    assert await storage.sync() == []
    storage.meta.forget(key_)
    reader = await storage.open_read(key_)
    assert await reader.read(0, 100) == b"kept and more"
    await reader.release()


@pytest.mark.semantics("Several handles on one file")
async def test_rm_of_a_big_file_held_open_does_not_download_it_first(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past KEEP_FOR_READERS_MAX unread bytes, an open reader's bytes are not fetched
    before the delete: they read as ESTALE (what was read stays readable)."""
    monkeypatch.setattr(storage_mod, "KEEP_FOR_READERS_MAX", 1000)
    held = ("vault", "alice/held")  # vault: reads fetch only the ranges asked for
    writer = await storage.open_write(held, truncate=True, create=True)
    await writer.write(0, b"h" * 5_000_000)
    await writer.flush()
    await writer.release()
    storage.meta.forget(held)
    reader = await storage.open_read(held)
    assert await reader.read(0, 10) == b"h" * 10
    assert reader.file.remote is not None
    fetched = reader.file.remote.fetched
    await storage.unlink(held)
    assert reader.file.remote.fetched == fetched  # nothing more was asked of the server
    assert await reader.read(0, 10) == b"h" * 10
    with pytest.raises(errors.Stale):
        await reader.read(4_900_000, 10)
    await reader.release()


@pytest.mark.semantics("Permissions")
async def test_a_copy_renamed_into_place_stays_a_copy(storage: Storage) -> None:
    """rsync writes a temporary file, renames it, then may set its mode by name: in a
    directory that passes permissions on, the mode is still a copy's (not applied)."""
    shared = ("arc", "home/alice/shared")
    await storage.mkdir(shared)
    await storage.setxattr(shared, "groupread", b"survey-team")
    await storage.setxattr(shared, "inheritPermissions", b"true")
    tmp, final = ("arc", "home/alice/shared/.a.txt.XyZ123"), ("arc", "home/alice/shared/a.txt")
    handle = await storage.open_write(tmp, truncate=True, create=True)
    await handle.write(0, b"a\n")
    await handle.flush()
    await handle.release()
    await storage.rename(tmp, final)
    node = await storage.chmod(final, 0o644)
    assert not node.is_public
    assert (await storage.attr(final)).mode & 0o777 == 0o644
