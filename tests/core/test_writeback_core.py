"""Write-back (docs/semantics.md, *Write-back*) in the storage core, in process against
the emulator: close() returns once the bytes are staged; the queue uploads them; fsync
waits for the server; queued renames and deletes end in the right state; a server copy
that changed under a queued upload is never overwritten.

Files are written the way the kernel sends it: open, write, close (flush), release.
What is asserted is what the server holds (its MD5) and what the mount shows.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from canfarfs import errors
from canfarfs.emulator.app import Emulator
from canfarfs.emulator.faults import FaultPlan
from canfarfs.fs.openfile import StorageHandle
from canfarfs.fs.storage import Storage
from canfarfs.vospace import props
from tests.skaha_util import until
from tests.storage_util import MakeStorage
from tests.vospace_util import client_for

pytestmark = pytest.mark.semantics("Write-back")
HOME = "home/alice"


@pytest.fixture
async def wb(make_storage: MakeStorage) -> AsyncIterator[Storage]:
    """Write-back with uploads as soon as a file is closed (no delay)."""
    config = {"meta_ttl": 0.05, "negative_ttl": 0.05, "writeback_delay": 0.0}
    async with make_storage(writeback=True, **config) as s:
        yield s


def key(name: str) -> tuple[str, str]:
    return ("arc", f"{HOME}/{name}")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - the protocol's checksum


async def open_new(storage: Storage, name: str) -> StorageHandle:
    return await storage.open_write(key(name), truncate=True, create=True)


async def write(storage: Storage, name: str, data: bytes) -> None:
    """``cat > name``: open, write, close; the close's error raises."""
    handle = await open_new(storage, name)
    try:
        await handle.write(0, data)
        await handle.flush()
    finally:
        await handle.release()


async def server_md5(emulator: Emulator, name: str) -> str | None:
    try:
        node = await client_for(emulator, "arc").get_node(f"{HOME}/{name}")
    except errors.NotFound:
        return None
    return node.prop(props.MD5)


async def until_on_server(emulator: Emulator, name: str, data: bytes) -> None:
    async def there() -> bool:
        return await server_md5(emulator, name) == md5(data)

    await until(there)


def refuse_puts(emulator: Emulator) -> None:
    """Every upload fails (503) until the plan is reset: the queue keeps everything."""
    emulator.faults.plan = FaultPlan(fail_next=10**6, fail_status=503, methods=frozenset({"PUT"}))


async def test_close_returns_before_the_upload_and_the_queue_sends_it(
    wb: Storage, emulator: Emulator
) -> None:
    emulator.faults.plan = FaultPlan(latency=0.5, methods=frozenset({"PUT"}))
    started = trio.current_time()
    await write(wb, "a.txt", b"written back\n")
    assert trio.current_time() - started < 0.4  # no upload waited for
    assert (await wb.attr(key("a.txt"))).size == 13  # the mount shows it at once
    assert [s.path for s in wb.pending()] == [f"{HOME}/a.txt"]
    await until_on_server(emulator, "a.txt", b"written back\n")
    assert wb.pending() == []


async def test_fsync_returns_only_once_the_server_holds_the_bytes(
    wb: Storage, emulator: Emulator
) -> None:
    handle = await open_new(wb, "f.txt")
    await handle.write(0, b"durable\n")
    await handle.fsync()
    assert await server_md5(emulator, "f.txt") == md5(b"durable\n")
    refuse_puts(emulator)
    await handle.write(8, b"more\n")
    with pytest.raises(errors.CanfarfsError):
        await handle.fsync()  # the server does not hold them: fsync says so
    emulator.faults.reset()
    await handle.flush()
    await handle.release()
    await until_on_server(emulator, "f.txt", b"durable\nmore\n")


async def test_queued_renames_and_deletes_end_in_the_right_state(
    wb: Storage, emulator: Emulator
) -> None:
    refuse_puts(emulator)
    await write(wb, "a.tmp", b"A\n")
    await write(wb, "gone.txt", b"never\n")
    await write(wb, "x.txt", b"X\n")
    await wb.rename(key("a.tmp"), key("a.txt"))  # an editor's save
    await wb.rename(key("x.txt"), key("y.txt"))
    await wb.rename(key("y.txt"), key("z.txt"))
    await wb.unlink(key("gone.txt"))
    names = [n for n, _ in await wb.listdir(("arc", HOME))]
    assert {"a.txt", "z.txt"} <= set(names)
    assert not {"a.tmp", "x.txt", "y.txt", "gone.txt"} & set(names)
    emulator.faults.reset()
    assert wb.writeback is not None
    wb.writeback.kick()
    await until_on_server(emulator, "a.txt", b"A\n")
    await until_on_server(emulator, "z.txt", b"X\n")
    for name in ("a.tmp", "x.txt", "y.txt", "gone.txt"):
        assert await server_md5(emulator, name) is None, name


async def test_a_rename_of_a_queued_file_that_is_on_the_server_moves_it_in_order(
    wb: Storage, emulator: Emulator
) -> None:
    await write(wb, "old.txt", b"v1\n")
    await until_on_server(emulator, "old.txt", b"v1\n")
    refuse_puts(emulator)
    await write(wb, "old.txt", b"v2\n")  # queued, the server still holds v1
    await wb.rename(key("old.txt"), key("new.txt"))
    assert await server_md5(emulator, "old.txt") is None
    emulator.faults.reset()
    assert wb.writeback is not None
    wb.writeback.kick()
    await until_on_server(emulator, "new.txt", b"v2\n")


async def test_a_server_copy_changed_under_a_queued_upload_is_not_overwritten(
    wb: Storage, emulator: Emulator, tmp_path: Path
) -> None:
    await write(wb, "shared.txt", b"base\n")
    await until_on_server(emulator, "shared.txt", b"base\n")
    mine = await wb.open_write(key("shared.txt"), truncate=False, create=False)
    await mine.write(5, b"mine\n")
    # Someone else saves the file on the server meanwhile.
    theirs = tmp_path / "theirs"
    theirs.write_bytes(b"theirs\n")
    await client_for(emulator, "arc").upload(f"{HOME}/shared.txt", theirs, 7, md5(b"theirs\n"))
    await mine.flush()
    await mine.release()

    async def settled() -> bool:
        return bool(wb.conflicts) and not wb.pending()

    await until(settled)
    [conflict] = wb.conflicts
    assert conflict.path == f"arc/{HOME}/shared.txt"
    aside = conflict.kept_as.removeprefix(f"arc/{HOME}/")
    assert aside.startswith("shared.txt.conflict-")
    assert await server_md5(emulator, "shared.txt") == md5(b"theirs\n")
    assert await server_md5(emulator, aside) == md5(b"base\nmine\n")
    names = [n for n, _ in await wb.listdir(("arc", HOME))]
    assert "shared.txt" in names
    assert aside in names


async def test_an_open_writer_holds_its_upload_until_its_last_close(
    wb: Storage, emulator: Emulator
) -> None:
    first = await open_new(wb, "log.txt")
    await first.write(0, b"one\n")
    second = await wb.open_write(key("log.txt"), truncate=False, create=False)
    await first.flush()  # one close of two: the file is still open for writing
    await first.release()
    await trio.sleep(0.3)
    assert await server_md5(emulator, "log.txt") is None
    await second.write(4, b"two\n")
    await second.flush()
    await second.release()
    await until_on_server(emulator, "log.txt", b"one\ntwo\n")


async def test_sync_uploads_the_queue_now(wb: Storage, emulator: Emulator) -> None:
    refuse_puts(emulator)
    for i in range(5):
        await write(wb, f"s{i}.txt", f"{i}\n".encode())
    assert len(wb.pending()) == 5
    emulator.faults.reset()
    assert await wb.sync() == []
    for i in range(5):
        assert await server_md5(emulator, f"s{i}.txt") == md5(f"{i}\n".encode())


# -- the write-back delay ------------------------------------------------------------------


def puts(emulator: Emulator) -> int:
    return emulator.faults.by_method.get("PUT", 0)


async def test_an_upload_starts_once_the_file_is_left_alone_for_the_delay(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    """A file rewritten within the delay goes up once, with its last bytes, after it."""
    async with make_storage(writeback=True, writeback_delay=1.0) as storage:
        before = puts(emulator)
        await write(storage, "draft.txt", b"one\n")
        await trio.sleep(0.5)
        await write(storage, "draft.txt", b"two\n")  # the delay starts again
        await trio.sleep(0.7)
        assert await server_md5(emulator, "draft.txt") is None  # 1.2 s, 0.7 s left alone
        started = trio.current_time()
        await until_on_server(emulator, "draft.txt", b"two\n")
        assert trio.current_time() - started < 1.0
        assert puts(emulator) - before == 1


async def test_a_file_renamed_or_removed_within_the_delay_goes_up_once_or_never(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    """An editor's save (write a temporary file, rename it over the name) and a scratch
    file removed again: one PUT, under the final name."""
    async with make_storage(writeback=True, writeback_delay=600.0) as storage:
        before = puts(emulator)
        await write(storage, ".notes.txt.swp", b"notes\n")
        await storage.rename(key(".notes.txt.swp"), key("notes.txt"))
        await write(storage, "scratch.o", b"scratch\n")
        await storage.unlink(key("scratch.o"))
        assert await storage.sync() == []
        assert await server_md5(emulator, "notes.txt") == md5(b"notes\n")
        for name in (".notes.txt.swp", "scratch.o"):
            assert await server_md5(emulator, name) is None
        assert puts(emulator) - before == 1


async def test_sync_uploads_at_once_and_several_at_a_time_whatever_the_delay(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    """``canfarfs sync`` does not wait for the delay, and its uploads overlap: 16 PUTs of
    0.3 s each take well under the 4.8 s they would one after another."""
    async with make_storage(writeback=True, writeback_delay=600.0) as storage:
        for i in range(16):
            await write(storage, f"p{i}.txt", f"{i}\n".encode())
        emulator.faults.plan = FaultPlan(latency=0.3, methods=frozenset({"PUT"}))
        started = trio.current_time()
        assert await storage.sync() == []
        assert trio.current_time() - started < 2.5
        assert storage.pending() == []
        for i in range(16):
            assert await server_md5(emulator, f"p{i}.txt") == md5(f"{i}\n".encode())


# -- dates and copies' modes go with the queue ----------------------------------------------


def posts(emulator: Emulator) -> int:
    return emulator.faults.by_method.get("POST", 0)


async def server_prop(emulator: Emulator, name: str, uri: str) -> str | None:
    return (await client_for(emulator, "arc").get_node(f"{HOME}/{name}")).prop(uri)


async def test_dates_and_a_copys_modes_are_shown_at_once_and_sent_with_the_queue(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    """``tar -x`` dates and moded directories: shown at once, no request until the
    queue (or ``sync``) sends them, and they follow a rename of the directory."""
    async with make_storage(writeback=True, writeback_delay=600.0) as storage:
        await storage.mkdir(key("src"))
        before = posts(emulator)
        when = 1_500_000_000_123_456_789
        await storage.chmod(key("src"), 0o755)  # a copy's mode: recorded, no access
        await storage.set_mtime(key("src"), when)
        attr = await storage.attr(key("src"))
        assert (attr.mtime_ns, attr.mode & 0o777) == (when, 0o755)
        assert posts(emulator) == before  # nothing sent yet
        with pytest.raises(errors.NotFound):  # not even the directory (made here)
            await server_prop(emulator, "src", props.MTIME)
        await storage.rename(key("src"), key("dst"))
        listed = dict(await storage.listdir(("arc", HOME)))
        assert listed["dst"].prop(props.MTIME) == str(when)  # listings show it too
        assert storage.status()["dates_queued"] == 1
        assert await storage.sync() == []
        assert await server_prop(emulator, "dst", props.MTIME) == str(when)
        assert (await server_prop(emulator, "dst", props.MODE) or "").startswith("755 ")
        assert storage.later == {}
        assert storage.status()["dates_queued"] == 0


async def test_access_changes_are_never_deferred(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    """``chmod o+r`` publishes at once, write-back or not."""
    async with make_storage(writeback=True, writeback_delay=600.0) as storage:
        await write(storage, "pub.txt", b"public\n")
        assert await storage.sync() == []
        await storage.chmod(key("pub.txt"), 0o604)  # o+r of a 0600 file: exactly
        assert await server_prop(emulator, "pub.txt", props.ISPUBLIC) == "true"


async def test_the_date_of_a_removed_node_is_never_sent(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    async with make_storage(writeback=True, writeback_delay=600.0) as storage:
        await storage.mkdir(key("tmpdir"))
        await storage.set_mtime(key("tmpdir"), 1_000_000_000_000_000_000)
        await storage.rmdir(key("tmpdir"))
        before = posts(emulator)
        assert await storage.sync() == []
        assert posts(emulator) == before
        assert storage.later == {}


async def test_the_queue_sends_dates_after_the_delay_through_a_failure(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    async with make_storage(writeback=True, writeback_delay=0.2) as storage:
        await storage.mkdir(key("later"))
        emulator.faults.plan = FaultPlan(fail_next=1, fail_status=503, methods=frozenset({"POST"}))
        await storage.set_mtime(key("later"), 1_234_000_000_000_000_000)

        async def sent() -> bool:
            try:  # the directory itself goes up first, after the delay
                return await server_prop(emulator, "later", props.MTIME) == "1234000000000000000"
            except errors.NotFound:
                return False

        await until(sent)
        assert storage.later == {}


async def test_uploads_go_one_at_a_time_while_files_are_being_written(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    """A copy still running keeps the cores: at 0.3 s a PUT, 8 queued files go up one
    at a time while another file is being written (at most 4 in 1 s; 8 at once would
    send them all in 0.3 s), and all of them once the writing stops."""
    async with make_storage(writeback=True, writeback_delay=0.0) as storage:
        emulator.faults.plan = FaultPlan(latency=0.3, methods=frozenset({"PUT"}))
        log = await open_new(storage, "copy.log")
        for i in range(8):
            await write(storage, f"q{i}.txt", f"{i}\n".encode())
        started = trio.current_time()
        offset = 0
        while trio.current_time() - started < 1.0:
            offset += await log.write(offset, b"still copying\n")
            await trio.sleep(0.05)
        on_server = [await server_md5(emulator, f"q{i}.txt") for i in range(8)]
        assert sum(m is not None for m in on_server) <= 4
        await log.flush()
        await log.release()
        for i in range(8):
            await until_on_server(emulator, f"q{i}.txt", f"{i}\n".encode())


# -- directories made with write-back -----------------------------------------------------


def writes(emulator: Emulator) -> int:
    """Requests that change the server so far."""
    return sum(emulator.faults.by_method.get(m, 0) for m in ("PUT", "POST", "DELETE"))


async def on_server(emulator: Emulator, name: str) -> bool:
    try:
        await client_for(emulator, "arc").get_node(f"{HOME}/{name}")
    except errors.NotFound:
        return False
    return True


async def test_mkdir_is_shown_at_once_and_created_with_the_queue(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    """``mkdir -p a/b`` and a file in it: no request until the queue (here ``sync``)
    sends them, parents first; the mount lists and stats them meanwhile."""
    async with make_storage(writeback=True, writeback_delay=600.0) as storage:
        await storage.listdir(("arc", HOME))  # as a shell's cd or ls would have
        requests = writes(emulator)
        await storage.mkdir(key("a"))
        await storage.mkdir(key("a/b"))
        await write(storage, "a/b/f.txt", b"deep\n")
        assert writes(emulator) == requests  # nothing sent
        assert (await storage.attr(key("a/b"))).mode & 0o170000 == 0o040000
        assert [n for n, _ in await storage.listdir(key("a"))] == ["b"]
        assert [n for n, _ in await storage.listdir(key("a/b"))] == ["f.txt"]
        assert "a" in [n for n, _ in await storage.listdir(("arc", HOME))]
        with pytest.raises(errors.NotFound):
            await storage.node(key("a/b/nothing"))  # answered here, nothing asked
        with pytest.raises(errors.AlreadyExists):
            await storage.mkdir(key("a"))
        assert not await on_server(emulator, "a")
        assert storage.status()["dirs_queued"] == 2
        assert await storage.sync() == []
        assert await server_md5(emulator, "a/b/f.txt") == md5(b"deep\n")
        assert storage.pending_dirs == {}
        assert storage.status()["dirs_queued"] == 0


async def test_fsync_inside_a_new_directory_creates_it_first(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    async with make_storage(writeback=True, writeback_delay=600.0) as storage:
        await storage.mkdir(key("run1"))
        handle = await open_new(storage, "run1/out.txt")
        await handle.write(0, b"durable inside a new directory\n")
        await handle.fsync()
        assert await server_md5(emulator, "run1/out.txt") == md5(
            b"durable inside a new directory\n"
        )
        await handle.release()


async def test_a_directory_renamed_or_removed_here_goes_up_under_its_final_name_or_never(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    async with make_storage(writeback=True, writeback_delay=600.0) as storage:
        await storage.mkdir(key("build.tmp"))
        await storage.mkdir(key("build.tmp/sub"))
        await write(storage, "build.tmp/sub/x.o", b"object\n")
        await storage.rename(key("build.tmp"), key("build"))
        await storage.mkdir(key("scratch"))
        await storage.mkdir(key("scratch/inner"))
        with pytest.raises(errors.NotEmpty):
            await storage.rmdir(key("scratch"))
        await storage.rmdir(key("scratch/inner"))
        await storage.rmdir(key("scratch"))
        names = [n for n, _ in await storage.listdir(("arc", HOME))]
        assert "build" in names
        assert not {"build.tmp", "scratch"} & set(names)
        assert await storage.sync() == []
        assert await server_md5(emulator, "build/sub/x.o") == md5(b"object\n")
        for gone in ("build.tmp", "scratch"):
            assert not await on_server(emulator, gone)


async def test_bytes_staged_under_a_directory_never_created_make_it_again(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A mount that dies after ``mkdir`` and a close, before either was sent: its
    directory was never journaled, its file was; the next mount makes the directory
    again for it (``mkdir -p``) and uploads it."""
    cache = tmp_path / "cache"
    async with make_storage(cache_dir=cache, writeback=True, writeback_delay=600.0) as storage:
        await storage.mkdir(key("night"))
        await write(storage, "night/obs.fits", b"photons\n")
        storage.close()  # the daemon goes: nothing was sent
    assert "1 new directory(ies) ['arc/home/alice/night']" in caplog.text  # said, not silent
    assert not await on_server(emulator, "night")
    async with make_storage(cache_dir=cache, writeback=True, writeback_delay=600.0) as storage:
        report = await storage.recover()
        assert any("night/obs.fits" in line for line in report)
        assert await storage.sync() == []
        assert await server_md5(emulator, "night/obs.fits") == md5(b"photons\n")


async def test_rmdir_of_a_directory_holding_one_made_here_is_enotempty(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    """On the server the directory is empty; here it holds a new one: ENOTEMPTY, and
    nothing is removed."""
    async with make_storage(writeback=True, writeback_delay=600.0) as storage:
        await storage.mkdir(key("data"))
        assert await storage.sync() == []
        await storage.mkdir(key("data/night1"))
        with pytest.raises(errors.NotEmpty):
            await storage.rmdir(key("data"))
        assert await storage.sync() == []
        assert await on_server(emulator, "data/night1")
