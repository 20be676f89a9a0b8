"""docs/semantics.md, the rows that need no kernel, against the storage core.

The storage core (``canfarfs.fs.storage.Storage``) is what the FUSE adapter calls: keys
``(service, path)`` in, bytes, attributes and :mod:`canfarfs.errors` out; the adapter
only decodes names and turns each error into its errno (``errors.errno_for``). So these
tests run the page's promises in process against the emulator, without /dev/fuse, and
check what a user would see: the bytes, sizes, modes and errnos, and what the server
then holds (read straight from the emulator's store). Each test is marked with the
section it checks (``@pytest.mark.semantics``) and quotes its row;
tests/unit/test_semantics_coverage.py checks that every section has a test here or in
tests/mount. What only the kernel side does (the mount root, ``chown``, hard links,
xattr namespaces, ``renameat2`` flags, ``opendir`` snapshots, the tools) stays in
tests/mount.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import re
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from canfarfs import errors
from canfarfs.emulator.app import Emulator
from canfarfs.emulator.faults import FaultPlan
from canfarfs.emulator.store import NodeRecord
from canfarfs.fs.meta import Key
from canfarfs.fs.staging import read_journal
from canfarfs.fs.storage import Storage
from canfarfs.vospace import props
from canfarfs.vospace.model import NodeType
from tests.storage_util import MakeStorage
from tests.vospace_util import client_for

SERVICES = ["arc", "vault"]
HOME = {"arc": "home/alice", "vault": "alice"}
MiB = 1024 * 1024
DOC = Path(__file__).resolve().parents[2] / "docs" / "semantics.md"

semantics = pytest.mark.semantics


def at(service: str, name: str) -> Key:
    """``name`` in alice's home on ``service``."""
    return (service, f"{HOME[service]}/{name}")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - the protocol's checksum


def record(emulator: Emulator, key: Key) -> NodeRecord | None:
    """The node as the server stores it (None: the server has no such node)."""
    return emulator.store.get(*key)


def server_bytes(emulator: Emulator, key: Key) -> bytes:
    rec = record(emulator, key)
    assert rec is not None, f"{key} is not on the server"
    path = emulator.store.data_path(rec)
    return path.read_bytes() if path.exists() else b""


async def write(storage: Storage, key: Key, data: bytes) -> None:
    """``open(O_CREAT|O_TRUNC)``, ``write``, ``close``."""
    handle = await storage.open_write(key, truncate=True, create=True)
    try:
        if data:
            await handle.write(0, data)
        await handle.flush()
    finally:
        await handle.release()


async def read_all(storage: Storage, key: Key) -> bytes:
    handle = await storage.open_read(key)
    try:
        return bytes(await handle.read(0, 1 << 30))
    finally:
        await handle.release()


async def elsewhere(emulator: Emulator, tmp_path: Path, key: Key, data: bytes) -> None:
    """Write ``key`` as ``vcp`` or the portal would: not through this mount."""
    src = tmp_path / f"elsewhere-{random.getrandbits(32):08x}"
    src.write_bytes(data)
    await client_for(emulator, key[0]).upload(key[1], src, len(data), md5(data))


async def errno_of(call: Awaitable[object]) -> int:
    """The errno the FUSE adapter would answer for ``call`` (it must fail)."""
    try:
        await call
    except Exception as exc:
        return errors.errno_for(exc)
    raise AssertionError("the call succeeded")


def mode(attr_mode: int) -> int:
    return stat.S_IMODE(attr_mode)


# -- Writing and durability ---------------------------------------------------------------


@semantics("Writing and durability")
@pytest.mark.parametrize("service", SERVICES)
async def test_close_returns_only_once_the_server_holds_the_bytes_with_their_md5(
    storage: Storage, emulator: Emulator, service: str
) -> None:
    """semantics.md: "`close()` (the flush) uploads the staged bytes and returns 0 only when
    the server answered with the same MD5" and "A new file appears on the server when it is
    first closed"."""
    key = at(service, "results.txt")
    data = os.urandom(300_000)
    handle = await storage.open_write(key, truncate=True, create=True)
    await handle.write(0, data)
    assert record(emulator, key) is None  # staged only
    await handle.flush()
    rec = record(emulator, key)
    assert rec is not None
    assert rec.length == len(data)
    assert rec.md5 == md5(data)
    assert server_bytes(emulator, key) == data
    await handle.release()
    assert await storage.getxattr(key, "MD5") == md5(data).encode()


@semantics("Writing and durability")
@pytest.mark.parametrize("service", SERVICES)
async def test_an_empty_new_file_is_created_and_reads_empty(
    storage: Storage, emulator: Emulator, make_storage: MakeStorage, service: str
) -> None:
    """semantics.md: "An empty file is created as the official clients do, with a DataNode
    document" (*Reading*: "Empty files read as empty at once")."""
    key = at(service, "empty")
    await write(storage, key, b"")
    rec = record(emulator, key)
    assert rec is not None
    assert rec.type is NodeType.DATA
    assert rec.length == 0
    async with make_storage() as other:  # another mount: the server's copy
        assert await read_all(other, key) == b""
        assert (await other.attr(key)).size == 0


@semantics("Writing and durability")
@pytest.mark.parametrize("service", SERVICES)
async def test_opening_for_update_starts_from_the_servers_bytes(
    storage: Storage, emulator: Emulator, tmp_path: Path, service: str
) -> None:
    """semantics.md: "Opening an existing file for update (without `O_TRUNC`) downloads it
    first"."""
    key = at(service, "table.csv")
    await elsewhere(emulator, tmp_path, key, b"a,b,c\n1,2,3\n")
    handle = await storage.open_write(key, truncate=False, create=False)
    await handle.write(6, b"9")
    await handle.write(12, b"4,5,6\n")
    await handle.flush()
    await handle.release()
    assert server_bytes(emulator, key) == b"a,b,c\n9,2,3\n4,5,6\n"


FAILED_CLOSE = [
    pytest.param(
        FaultPlan(fail_rate=1.0, fail_status=413, methods=frozenset({"PUT"})),
        errno.EDQUOT,
        id="quota-EDQUOT",
    ),
    pytest.param(
        FaultPlan(fail_rate=1.0, fail_status=403, methods=frozenset({"PUT"})),
        errno.EACCES,
        id="permission-EACCES",
    ),
    pytest.param(FaultPlan(fail_rate=1.0, fail_status=503), errno.EIO, id="failing-EIO"),
]


@semantics("Writing and durability")
@pytest.mark.parametrize(("fault", "expected"), FAILED_CLOSE)
async def test_a_failed_close_gives_its_errno_keeps_the_bytes_and_the_next_close_uploads(
    make_storage: MakeStorage, emulator: Emulator, fault: FaultPlan, expected: int
) -> None:
    """semantics.md: "Otherwise `close()` fails with: quota exhausted EDQUOT; no permission
    EACCES; ... server unreachable or failing after retries EIO" and "A failed upload
    keeps the staged bytes and a journal entry beside them in `<cache-dir>/staging/`. The
    next `close()`/`fsync()` of the file tries again". (An upload's ETIMEDOUT is a
    silence on the wire, which only a socket has: tests/mount/test_mount_faults.py.)"""
    key = at("arc", "survey.fits")
    data = os.urandom(50_000)
    async with make_storage(mount_timeout=0.5) as storage:
        handle = await storage.open_write(key, truncate=True, create=True)
        await handle.write(0, data)
        emulator.faults.plan = fault
        try:
            with trio.fail_after(10):  # bounded, never a hung close
                assert await errno_of(handle.flush()) == expected
        finally:
            emulator.faults.reset()
        kept = list(storage.staging_dir.iterdir())
        assert [p.suffix for p in kept] == [".data"]  # the bytes, their journal entry in
        entry = read_journal(kept[0])  # an extended attribute (ext4 and tmpfs keep them)
        assert entry is not None
        assert (entry["service"], entry["path"], entry["dirty"]) == (*key, True)
        assert record(emulator, key) is None or server_bytes(emulator, key) != data
        await handle.flush()  # the next close tries again
        await handle.release()
    assert server_bytes(emulator, key) == data


@semantics("Writing and durability")
async def test_a_locked_vault_file_refuses_the_close(storage: Storage, emulator: Emulator) -> None:
    """semantics.md: "no permission, node locked: EACCES / EPERM" (the lock is the server's
    own)."""
    key = at("vault", "frozen.txt")
    await write(storage, key, b"v1")
    await storage.setxattr(key, "islocked", b"true")
    handle = await storage.open_write(key, truncate=True, create=False)
    await handle.write(0, b"v2")
    assert await errno_of(handle.flush()) in (errno.EACCES, errno.EPERM)
    await handle.release()
    assert server_bytes(emulator, key) == b"v1"


@semantics("Writing and durability")
async def test_after_a_crash_the_next_mount_uploads_what_was_staged(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    """semantics.md: "after a crash, the next mount uploads them (or logs where they are
    kept)"."""
    key = at("arc", "night-run.log")
    cache = tmp_path / "shared-cache"
    async with make_storage(cache_dir=cache) as first:
        handle = await first.open_write(key, truncate=True, create=True)
        await handle.write(0, b"line 1\nline 2\n")
        emulator.faults.plan = FaultPlan(fail_rate=1.0, fail_status=503)
        assert await errno_of(handle.flush()) == errno.EIO
        emulator.faults.reset()
        # the daemon dies here: no release, no close, no unmount
    assert record(emulator, key) is None
    async with make_storage(cache_dir=cache) as second:
        report = await second.recover()
    assert any(line.startswith("recovered: arc:home/alice/night-run.log") for line in report)
    assert server_bytes(emulator, key) == b"line 1\nline 2\n"


@semantics("Writing and durability")
async def test_truncating_a_vault_file_to_zero_keeps_its_properties(
    storage: Storage, emulator: Emulator
) -> None:
    """semantics.md: "Truncating a vault file to 0 bytes replaces the node (storage refuses
    empty bodies), keeping its properties"."""
    key = at("vault", "catalogue.txt")
    await write(storage, key, b"rows\n" * 100)
    await storage.setxattr(key, "quality", b"verified")
    await storage.truncate(key, 0)
    rec = record(emulator, key)
    assert rec is not None
    assert rec.length == 0
    assert rec.props.get("quality") == "verified"


# -- Reading -------------------------------------------------------------------------------


@semantics("Reading")
@pytest.mark.parametrize("service", SERVICES)
async def test_random_reads_are_correct_on_both_services(
    storage: Storage, make_storage: MakeStorage, service: str
) -> None:
    """semantics.md: "random reads are correct on both" (*At a glance*), arc streaming the
    whole file and vault fetching ranges."""
    key = at(service, "cube.fits")
    data = os.urandom(3 * MiB + 123)
    await write(storage, key, data)
    offsets = [0, 5, MiB - 1, 2 * MiB + 7, 3 * MiB, 3 * MiB + 100, len(data) + 10]
    random.Random(17).shuffle(offsets)  # noqa: S311 - an order, not a secret
    async with make_storage() as reader:  # a cold cache: the bytes come from the server
        handle = await reader.open_read(key)
        for offset in offsets:
            assert bytes(await handle.read(offset, 4096)) == data[offset : offset + 4096]
        await handle.release()


@semantics("Reading")
async def test_cached_bytes_are_reused_while_the_node_is_unchanged(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    """semantics.md: "Cached bytes are kept ... and reused while the node's MD5, length and
    date are unchanged" (and a changed node is read again)."""
    key = at("arc", "reused.bin")
    await elsewhere(emulator, tmp_path, key, b"first version")
    async with make_storage(meta_ttl=0.3, negative_ttl=0.3) as storage:
        assert await read_all(storage, key) == b"first version"
        before = emulator.faults.requests
        assert await read_all(storage, key) == b"first version"
        assert emulator.faults.requests == before  # nothing asked: cached bytes, fresh node
        await elsewhere(emulator, tmp_path, key, b"second version!")
        await trio.sleep(0.4)
        assert await read_all(storage, key) == b"second version!"


# -- Several handles on one file -----------------------------------------------------------
# (tests/core/test_open_files_core.py checks the rest of this section.)


@semantics("Several handles on one file")
@pytest.mark.parametrize("service", SERVICES)
async def test_unlink_of_an_open_file_removes_the_name_at_once_and_handles_keep_the_bytes(
    storage: Storage, emulator: Emulator, service: str
) -> None:
    """semantics.md: "`unlink` of an open file removes the name at once (from the server,
    and from listings); open handles keep reading (and writing) the bytes they had until
    they close ... Nothing is uploaded for it"."""
    key = at(service, "scratch.dat")
    await write(storage, key, b"scratch bytes")
    reader = await storage.open_read(key)
    writer = await storage.open_write(key, truncate=False, create=False)
    await storage.unlink(key)
    assert record(emulator, key) is None
    assert "scratch.dat" not in dict(await storage.listdir((service, HOME[service])))
    assert await errno_of(storage.node(key)) == errno.ENOENT
    await writer.write(13, b"!")
    assert bytes(await reader.read(0, 100)) == b"scratch bytes!"
    await writer.flush()
    await writer.release()
    await reader.release()
    assert record(emulator, key) is None  # nothing uploaded under the old name


@semantics("Several handles on one file")
@pytest.mark.parametrize("service", SERVICES)
async def test_a_file_renamed_while_open_for_writing_is_uploaded_under_its_new_name(
    storage: Storage, emulator: Emulator, service: str
) -> None:
    """semantics.md: "Handles open on the renamed file follow it to its new name, and its
    next upload goes to the new name"."""
    draft, final = at(service, "draft.txt"), at(service, "final.txt")
    writer = await storage.open_write(draft, truncate=True, create=True)
    await writer.write(0, b"part one; ")
    await writer.flush()
    await storage.rename(draft, final)
    await writer.write(10, b"part two")
    await writer.flush()
    await writer.release()
    assert record(emulator, draft) is None
    assert server_bytes(emulator, final) == b"part one; part two"


@semantics("Several handles on one file")
async def test_bytes_never_fetched_before_the_file_was_deleted_elsewhere_read_as_estale(
    storage: Storage, make_storage: MakeStorage, emulator: Emulator
) -> None:
    """Errno table: "ESTALE: a read of bytes an open file never fetched before it was
    deleted or replaced"."""
    key = at("vault", "big.fits")
    data = os.urandom(4 * MiB)
    await write(storage, key, data)
    async with make_storage() as reader_mount:
        reader = await reader_mount.open_read(key)
        assert bytes(await reader.read(0, 100)) == data[:100]
        await client_for(emulator, "vault").delete_node(key[1])
        assert await errno_of(reader.read(3 * MiB, 4096)) == errno.ESTALE
        assert bytes(await reader.read(0, 100)) == data[:100]  # what it had, it keeps
        await reader.release()


@semantics("Several handles on one file")
async def test_across_two_mounts_the_last_close_wins_and_shows_after_the_ttl(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    """semantics.md: "Across two mounts ... the last `close()` wins, as on NFS. A reader on
    one mount sees another's change at its next `open()` once the metadata TTL has
    passed"."""
    key = at("arc", "shared.cfg")
    async with make_storage(meta_ttl=0.3) as one, make_storage(meta_ttl=0.3) as two:
        await write(one, key, b"from one")
        assert await read_all(two, key) == b"from one"
        a = await one.open_write(key, truncate=True, create=False)
        b = await two.open_write(key, truncate=True, create=False)
        await a.write(0, b"one again")
        await b.write(0, b"two")
        await b.flush()
        await a.flush()  # the last close
        await a.release()
        await b.release()
        assert server_bytes(emulator, key) == b"one again"
        await trio.sleep(0.4)
        assert await read_all(two, key) == b"one again"


# -- Names ---------------------------------------------------------------------------------

BAD_NAMES = [
    pytest.param("bell\aname", errno.EINVAL, id="control-character"),
    pytest.param("esc\x1bname", errno.EINVAL, id="escape"),
    pytest.param("not-utf8-\udcff", errno.EINVAL, id="not-utf8"),
    pytest.param(".", errno.EINVAL, id="dot"),
    pytest.param("..", errno.EINVAL, id="dotdot"),
    pytest.param("x" * 256, errno.ENAMETOOLONG, id="256-bytes"),
    pytest.param("é" * 128, errno.ENAMETOOLONG, id="256-bytes-of-128-letters"),
]


@semantics("Names")
@pytest.mark.parametrize(("name", "expected"), BAD_NAMES)
async def test_names_vospace_cannot_hold_are_refused_with_their_errno(
    storage: Storage, emulator: Emulator, name: str, expected: int
) -> None:
    """semantics.md: "Refused with **EINVAL**: names with control characters other than tab,
    line feed and carriage return ..., names that are not valid UTF-8, `.` and `..` as
    names" and "Refused with **ENAMETOOLONG**: names longer than 255 bytes"."""
    await write(storage, at("arc", "source.txt"), b"x")
    home = ("arc", HOME["arc"])
    key = at("arc", name)
    # open(O_CREAT) and stat ask the name first: the kernel's LOOKUP, refused here
    assert await errno_of(storage.lookup(home, name)) == expected
    assert await errno_of(storage.mkdir(key)) == expected
    assert await errno_of(storage.symlink(key, "source.txt")) == expected
    assert await errno_of(storage.rename(at("arc", "source.txt"), key)) == expected
    names = {rec.name for rec in emulator.store.children("arc", HOME["arc"])}
    assert names == {"source.txt"}  # nothing reached the server


GOOD_NAMES = [
    "spaces and ünïcode.txt",
    "tab\there",
    "line\nfeed",
    "x" * 255,
    "é" * 127 + "x",  # 255 bytes
    "(parens) [brackets] & 'quotes' \"double\" #hash %percent",
]


@semantics("Names")
@pytest.mark.parametrize("service", SERVICES)
async def test_any_name_vospace_can_hold_works(
    storage: Storage, emulator: Emulator, make_storage: MakeStorage, service: str
) -> None:
    """semantics.md: "Any name VOSpace can hold works, including spaces and non-ASCII
    letters" (tab, line feed and carriage return are allowed; 255 bytes is the limit)."""
    for i, name in enumerate(GOOD_NAMES):
        await write(storage, at(service, name), f"file {i}".encode())
    async with make_storage() as other:  # as listed by the server
        listed = dict(await other.listdir((service, HOME[service])))
    for i, name in enumerate(GOOD_NAMES):
        assert name in listed
        assert server_bytes(emulator, at(service, name)) == f"file {i}".encode()


# -- Permissions ---------------------------------------------------------------------------


@semantics("Permissions")
async def test_owner_always_reads_and_writes_and_new_nodes_are_private(storage: Storage) -> None:
    """semantics.md: "Owner and group of every entry are the mounting user; the owner always
    has read and write"; other and group bits only from ispublic and group lists."""
    await write(storage, at("vault", "private.txt"), b"x")
    await storage.mkdir(at("vault", "private-dir"))
    assert (await storage.attr(at("vault", "private.txt"))).mode == stat.S_IFREG | 0o600
    assert (await storage.attr(at("vault", "private-dir"))).mode == stat.S_IFDIR | 0o700


@semantics("Permissions")
@pytest.mark.parametrize("service", SERVICES)
async def test_chmod_maps_to_ispublic_and_the_group_lists(
    storage: Storage, emulator: Emulator, service: str
) -> None:
    """semantics.md: "`chmod o+r` / `o-r` sets `ispublic`; `chmod g-r` / `g-w` clears the
    group list; `chmod g+r` / `g+w` keeps a group already set ... With no group set yet, set
    one first ... (**EPERM** otherwise)"."""
    key = at(service, "results.txt")
    await write(storage, key, b"some results\n")

    def server_props() -> dict[str, str]:
        rec = record(emulator, key)
        assert rec is not None
        return rec.props

    await storage.chmod(key, 0o604)  # o+r
    assert server_props().get(props.ISPUBLIC) == "true"
    assert mode((await storage.attr(key)).mode) == 0o604
    assert await errno_of(storage.chmod(key, 0o644)) == errno.EPERM  # g+r, no group yet
    assert server_props().get(props.GROUPREAD) in (None, "")
    await storage.setxattr(key, "groupread", b"my-team")
    await storage.chmod(key, 0o664)  # g+w keeps the group already set
    assert "my-team" in server_props()[props.GROUPWRITE]
    assert mode((await storage.attr(key)).mode) == 0o664
    await storage.chmod(key, 0o600)  # go-rw
    p = server_props()
    assert p.get(props.ISPUBLIC) == "false"
    assert not p.get(props.GROUPREAD)
    assert not p.get(props.GROUPWRITE)
    assert mode((await storage.attr(key)).mode) == 0o600


@semantics("Permissions")
@pytest.mark.parametrize("requested", [0o602, 0o606, 0o4600, 0o2600, 0o1600, 0o200], ids=oct)
async def test_bits_vospace_cannot_express_are_eperm_and_change_nothing(
    storage: Storage, emulator: Emulator, requested: int
) -> None:
    """semantics.md: "Bits VOSpace cannot express (`o+w`, setuid, setgid, sticky, removing
    the owner's read) give **EPERM**" and "An explicit `chmod` ... is all or nothing"."""
    key = at("arc", "results.txt")
    await write(storage, key, b"x")
    before = record(emulator, key)
    assert await errno_of(storage.chmod(key, requested)) == errno.EPERM
    after = record(emulator, key)
    assert before is not None
    assert after is not None
    assert after.props == before.props
    assert mode((await storage.attr(key)).mode) == 0o600


@semantics("Permissions")
async def test_a_copys_mode_is_recorded_never_applied_until_the_access_changes(
    storage: Storage, emulator: Emulator
) -> None:
    """semantics.md: "A copy's mode is recorded, never applied ... a mode that asks for more
    than the node grants to both group and others at once (`chmod 644` of a private file)
    ... is kept in the property `ivo://canfar.net/canfarfs#mode` ... `stat` shows the
    recorded mode ... once the access changes (`setfattr -n user.ispublic`), `stat` shows
    the access again"."""
    key = at("vault", "from-laptop.txt")
    await write(storage, key, b"x")
    await storage.chmod(key, 0o644)
    rec = record(emulator, key)
    assert rec is not None
    assert rec.props.get(props.ISPUBLIC) != "true"  # nothing published
    assert rec.props.get(props.MODE) == "644 600"
    assert mode((await storage.attr(key)).mode) == 0o644
    assert await storage.getxattr(key, "ispublic") == b"false"
    await storage.setxattr(key, "ispublic", b"true")
    assert mode((await storage.attr(key)).mode) == 0o604


@semantics("Permissions")
async def test_strict_modes_refuse_a_copys_mode(make_storage: MakeStorage) -> None:
    """semantics.md: "**`--strict-modes`** ... refuses a copy's mode as an explicit `chmod`
    would: **EPERM**"."""
    key = at("arc", "strict.txt")
    async with make_storage(strict_modes=True) as storage:
        await write(storage, key, b"x")
        assert await errno_of(storage.chmod(key, 0o644)) == errno.EPERM
        assert mode((await storage.attr(key)).mode) == 0o600


@semantics("Permissions")
async def test_a_mode_set_on_a_file_open_for_writing_is_a_copys(
    storage: Storage, emulator: Emulator
) -> None:
    """semantics.md: "A mode set on a file open for writing (they use `fchmod` on the file
    they write) ... is a copy's: it changes no access"."""
    key = at("arc", "copied.txt")
    await write(storage, key, b"old")
    handle = await storage.open_write(key, truncate=True, create=False)
    await handle.write(0, b"new")
    await storage.chmod(key, 0o604)  # o+r alone, but from a copy
    await handle.flush()
    await handle.release()
    rec = record(emulator, key)
    assert rec is not None
    assert rec.props.get(props.ISPUBLIC) != "true"
    assert rec.props.get(props.MODE) == "604 600"


@semantics("Permissions")
@pytest.mark.parametrize("service", SERVICES)
async def test_a_mode_and_a_property_set_before_the_first_close_reach_the_server_after_it(
    storage: Storage, emulator: Emulator, service: str
) -> None:
    """semantics.md: "A mode or property set on a new file before its first `close()` (as
    `cp -p` does, or `setfattr` on an open file) is kept with the staged file and applied
    right after the upload"."""
    key = at(service, "new-with-mode.txt")
    handle = await storage.open_write(key, truncate=True, create=True)
    await handle.write(0, b"payload")
    await storage.chmod(key, 0o644)
    await storage.setxattr(key, "quality", b"draft")
    assert record(emulator, key) is None
    assert await storage.getxattr(key, "quality") == b"draft"  # shown meanwhile
    await handle.flush()
    await handle.release()
    rec = record(emulator, key)
    assert rec is not None
    assert server_bytes(emulator, key) == b"payload"
    assert rec.props.get("quality") == "draft"
    assert rec.props.get(props.MODE) == "644 600"
    assert rec.props.get(props.ISPUBLIC) != "true"


# -- Properties as extended attributes -----------------------------------------------------


@semantics("Properties as extended attributes")
@pytest.mark.parametrize("service", SERVICES)
async def test_properties_read_as_attributes_under_their_short_names(
    storage: Storage, make_storage: MakeStorage, service: str
) -> None:
    """semantics.md: "Every node property is readable with `getfattr -d` under `user.`;
    well-known ones have short names" (user.MD5, user.length, user.creator, ...)."""
    key = at(service, "results.txt")
    await write(storage, key, b"some results\n")
    async with make_storage() as other:  # the server's properties, not our cache
        names = await other.listxattr(key)
        assert {"MD5", "length", "creator", "date"} <= set(names)
        assert await other.getxattr(key, "MD5") == b"2430b2e34cdbbb88a41ad694dd42a797"
        assert await other.getxattr(key, "length") == b"13"
        assert await other.getxattr(key, "creator") == b"alice"


@semantics("Properties as extended attributes")
@pytest.mark.parametrize("name", ["length", "date", "content-date", "MD5", "creator", "quota"])
async def test_the_servers_own_properties_are_read_only(
    storage: Storage, emulator: Emulator, name: str
) -> None:
    """semantics.md: "`user.length`, `user.date`, `user.content-date`, `user.MD5`,
    `user.creator`, `user.quota` ... writable: no (EPERM)"."""
    key = at("vault", "results.txt")
    await write(storage, key, b"x")
    assert await errno_of(storage.setxattr(key, name, b"0")) == errno.EPERM
    assert await errno_of(storage.removexattr(key, name)) == errno.EPERM
    rec = record(emulator, key)
    assert rec is not None
    assert rec.md5 == md5(b"x")
    assert rec.length == 1


@semantics("Properties as extended attributes")
@pytest.mark.parametrize("service", SERVICES)
async def test_custom_properties_are_set_and_removed_and_missing_ones_are_enodata(
    storage: Storage, emulator: Emulator, service: str
) -> None:
    """semantics.md: "`user.<anything else>`: a custom property with that key ... `setfattr
    -x` removes it"; "A missing attribute: **ENODATA**"."""
    key = at(service, "results.txt")
    await write(storage, key, b"x")
    await storage.setxattr(key, "quality", b"verified")
    rec = record(emulator, key)
    assert rec is not None
    assert rec.props.get("quality") == "verified"
    assert await storage.getxattr(key, "quality") == b"verified"
    await storage.removexattr(key, "quality")
    rec = record(emulator, key)
    assert rec is not None
    assert "quality" not in rec.props
    assert await errno_of(storage.getxattr(key, "quality")) == errno.ENODATA
    assert await errno_of(storage.removexattr(key, "quality")) == errno.ENODATA


@semantics("Properties as extended attributes")
async def test_flags_take_true_or_false_and_groups_take_lists(
    storage: Storage, emulator: Emulator
) -> None:
    """semantics.md: "`user.ispublic` `true`/`false`"; "`user.groupread`, `user.groupwrite`
    group names, space- or comma-separated"; "An unknown key in the VOSpace core namespace:
    **EPERM**"."""
    key = at("vault", "shared.txt")
    await write(storage, key, b"x")
    assert await errno_of(storage.setxattr(key, "ispublic", b"yes")) == errno.EINVAL
    await storage.setxattr(key, "ispublic", b"TRUE")
    await storage.setxattr(key, "groupread", b"team-a, team-b")
    rec = record(emulator, key)
    assert rec is not None
    assert rec.props.get(props.ISPUBLIC) == "true"
    assert rec.props[props.GROUPREAD] == props.groups_to_value(["team-a", "team-b"])
    assert await storage.getxattr(key, "groupread") == b"team-a team-b"
    unknown = "ivo://ivoa.net/vospace/core#nonsense"
    assert await errno_of(storage.setxattr(key, unknown, b"1")) == errno.EPERM


@semantics("Properties as extended attributes")
async def test_vault_stores_the_lock_and_arc_ignores_it(
    storage: Storage, emulator: Emulator
) -> None:
    """semantics.md: "`user.islocked`: CADC#islocked (vault stores it; arc ignores it)"."""
    for service in SERVICES:
        await write(storage, at(service, "lockme"), b"x")
        await storage.setxattr(at(service, "lockme"), "islocked", b"true")
    vault, arc = record(emulator, at("vault", "lockme")), record(emulator, at("arc", "lockme"))
    assert vault is not None
    assert vault.props.get(props.ISLOCKED) == "true"
    assert arc is not None
    assert props.ISLOCKED not in arc.props


# -- Links ---------------------------------------------------------------------------------


@semantics("Links")
async def test_a_relative_link_inside_the_mount_is_a_vos_uri_read_back_relative(
    storage: Storage, emulator: Emulator
) -> None:
    """semantics.md: "A relative target ... inside `arc/` or `vault/` becomes a `vos://`
    URI; `readlink` turns it back into a relative path" (the page's example)."""
    await write(storage, at("vault", "results.txt"), b"some results\n")
    await storage.mkdir(at("vault", "latest"))
    link = at("vault", "latest/results.txt")
    await storage.symlink(link, "../results.txt")
    rec = record(emulator, link)
    assert rec is not None
    assert rec.type is NodeType.LINK
    assert rec.target == client_for(emulator, "vault").uri("alice/results.txt")
    assert await storage.readlink(link) == "../results.txt"
    attr = await storage.attr(link)
    assert stat.S_ISLNK(attr.mode)
    assert attr.size == len("../results.txt")


@semantics("Links")
async def test_absolute_targets_under_and_outside_the_mount(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    """semantics.md: "A relative target (or an absolute one under the mount point) inside
    `arc/` or `vault/` becomes a `vos://` URI ... An absolute target outside the mount is
    stored as `file://…`"; a link from arc to vault is a relative path across the two."""
    mnt = tmp_path / "canfar"
    async with make_storage(mountpoint=mnt) as storage:
        inside = at("arc", "links/to-data")
        await storage.mkdir(at("arc", "links"))
        await storage.symlink(inside, f"{mnt}/arc/home/alice/data.fits")
        rec = record(emulator, inside)
        assert rec is not None
        assert rec.target == client_for(emulator, "arc").uri("home/alice/data.fits")
        assert await storage.readlink(inside) == "../data.fits"
        outside = at("arc", "hosts")
        await storage.symlink(outside, "/etc/hosts")
        rec = record(emulator, outside)
        assert rec is not None
        assert rec.target == "file:///etc/hosts"
        assert await storage.readlink(outside) == "/etc/hosts"


@semantics("Links")
async def test_a_relative_target_that_climbs_out_of_the_mount_is_einval(
    storage: Storage, emulator: Emulator
) -> None:
    """semantics.md: "A relative target that climbs out of the mount: **EINVAL**"."""
    link = at("arc", "escape")
    assert await errno_of(storage.symlink(link, "../../../../etc/passwd")) == errno.EINVAL
    assert record(emulator, link) is None


# -- Renames -------------------------------------------------------------------------------


@semantics("Renames")
@pytest.mark.parametrize("service", SERVICES)
async def test_mv_moves_files_and_directories_and_replaces_a_file(
    storage: Storage, emulator: Emulator, service: str
) -> None:
    """semantics.md: "`mv` runs a VOSpace move job and waits for it. Replacing an existing
    file is two steps (delete, then move)": when rename returns, the server has the new
    layout."""
    old, new = at(service, "old.txt"), at(service, "new.txt")
    await write(storage, old, b"old bytes")
    await write(storage, new, b"to be replaced")
    await storage.rename(old, new)
    assert record(emulator, old) is None
    assert server_bytes(emulator, new) == b"old bytes"
    await storage.mkdir(at(service, "dir"))
    await write(storage, at(service, "dir/inner.txt"), b"inner")
    await storage.rename(at(service, "dir"), at(service, "moved"))
    assert record(emulator, at(service, "dir")) is None
    assert server_bytes(emulator, at(service, "moved/inner.txt")) == b"inner"
    assert await read_all(storage, at(service, "moved/inner.txt")) == b"inner"


@semantics("Renames")
async def test_rename_refusals_and_their_errnos(storage: Storage, emulator: Emulator) -> None:
    """semantics.md: "Replacing an empty directory works; a non-empty one: **ENOTEMPTY**.
    Moving a directory into itself: **EINVAL**. arc ↔ vault: **EXDEV**" (and a file over a
    directory EISDIR, a directory over a file ENOTDIR, as POSIX says)."""
    for name in ("src", "empty", "full"):
        await storage.mkdir(at("arc", name))
    await write(storage, at("arc", "full/keep.txt"), b"keep")
    await write(storage, at("arc", "file.txt"), b"f")
    assert await errno_of(storage.rename(at("arc", "src"), at("arc", "full"))) == errno.ENOTEMPTY
    assert await errno_of(storage.rename(at("arc", "src"), at("arc", "src/sub"))) == errno.EINVAL
    assert (
        await errno_of(storage.rename(at("arc", "file.txt"), at("vault", "file.txt")))
        == errno.EXDEV
    )
    assert await errno_of(storage.rename(at("arc", "file.txt"), at("arc", "empty"))) == errno.EISDIR
    assert await errno_of(storage.rename(at("arc", "src"), at("arc", "file.txt"))) == errno.ENOTDIR
    assert server_bytes(emulator, at("arc", "full/keep.txt")) == b"keep"
    assert record(emulator, at("vault", "file.txt")) is None
    await storage.rename(at("arc", "src"), at("arc", "empty"))  # over an empty directory
    assert record(emulator, at("arc", "src")) is None
    rec = record(emulator, at("arc", "empty"))
    assert rec is not None
    assert rec.type is NodeType.CONTAINER


@semantics("Renames")
async def test_a_rename_over_an_open_file_leaves_its_readers_the_old_bytes(
    storage: Storage, emulator: Emulator
) -> None:
    """*Several handles*: "**`rename` over an open file** (what `rsync`, editors and
    atomic writers do) ... its open handles keep its old bytes" — the atomic-save
    pattern: write a temporary file, rename it over the original."""
    original, tmp = at("arc", "paper.tex"), at("arc", ".paper.tex.swp")
    await write(storage, original, b"draft 1")
    reader = await storage.open_read(original)
    await write(storage, tmp, b"draft 2")
    await storage.rename(tmp, original)
    assert bytes(await reader.read(0, 100)) == b"draft 1"
    await reader.release()
    assert server_bytes(emulator, original) == b"draft 2"
    assert await read_all(storage, original) == b"draft 2"


# -- Dates ---------------------------------------------------------------------------------

A_DATE = 1_600_000_000_123_456_789  # 2020-09-13, with nanoseconds


@semantics("Dates")
@pytest.mark.parametrize("service", SERVICES)
async def test_a_date_set_is_kept_with_the_md5_of_the_bytes_it_dates(
    storage: Storage, emulator: Emulator, make_storage: MakeStorage, service: str
) -> None:
    """semantics.md: "A date set with `utimensat` ... is kept in a property of the node,
    `ivo://canfar.net/canfarfs#mtime` ..., as nanoseconds together with the MD5 of the bytes
    it dates, and `stat` shows it"."""
    key = at(service, "dated.txt")
    await write(storage, key, b"dated bytes")
    await storage.set_mtime(key, A_DATE)
    rec = record(emulator, key)
    assert rec is not None
    assert rec.props[props.MTIME] == f"{A_DATE} {md5(b'dated bytes')}"
    async with make_storage() as other:
        assert (await other.attr(key)).mtime_ns == A_DATE
        assert await other.getxattr(key, "mtime") == f"{A_DATE} {md5(b'dated bytes')}".encode()


@semantics("Dates")
async def test_bytes_rewritten_elsewhere_show_the_servers_date_again(
    storage: Storage, emulator: Emulator, make_storage: MakeStorage, tmp_path: Path
) -> None:
    """semantics.md: "A file rewritten through the mount, or by `vcp`, the portal or another
    mount, shows the server's date again (its MD5 changed)"."""
    key = at("arc", "rebuilt.o")
    await write(storage, key, b"v1")
    await storage.set_mtime(key, A_DATE)
    await elsewhere(emulator, tmp_path, key, b"v2 from vcp")
    async with make_storage() as other:
        shown = (await other.attr(key)).mtime_ns
    assert shown != A_DATE
    assert shown > A_DATE


@semantics("Dates")
async def test_a_date_set_on_staged_bytes_is_recorded_after_the_upload(
    storage: Storage, emulator: Emulator
) -> None:
    """semantics.md: "set on a file whose bytes are still staged (`cp -p` sets the date
    before `close()`), it is recorded right after the upload, with the MD5 of what was
    uploaded"."""
    key = at("vault", "cp-p.txt")
    handle = await storage.open_write(key, truncate=True, create=True)
    await handle.write(0, b"copied")
    await storage.set_mtime(key, A_DATE)
    assert (await storage.attr(key)).mtime_ns == A_DATE
    await handle.flush()
    await handle.release()
    rec = record(emulator, key)
    assert rec is not None
    assert rec.props[props.MTIME] == f"{A_DATE} {md5(b'copied')}"


@semantics("Dates")
async def test_the_servers_date_cannot_be_set_and_a_directory_keeps_its_date_until_it_changes(
    storage: Storage,
) -> None:
    """semantics.md: "The services keep `core#date` (the last change) themselves and refuse
    to have it set"; a date on a directory holds "until an entry comes or goes through the
    mount"."""
    await storage.mkdir(at("arc", "dated-dir"))
    await write(storage, at("arc", "dated-dir/a"), b"a")
    assert await errno_of(storage.setxattr(at("arc", "dated-dir/a"), "date", b"x")) == errno.EPERM
    await storage.set_mtime(at("arc", "dated-dir"), A_DATE)
    assert (await storage.attr(at("arc", "dated-dir"))).mtime_ns == A_DATE
    await write(storage, at("arc", "dated-dir/b"), b"b")
    assert (await storage.attr(at("arc", "dated-dir"))).mtime_ns > A_DATE


# -- Freshness -----------------------------------------------------------------------------


@semantics("Freshness")
async def test_changes_elsewhere_show_within_the_ttl_and_our_own_at_once(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path
) -> None:
    """semantics.md: "The daemon caches listings, attributes and "does not exist" answers
    for `--meta-ttl` seconds ... Changes made elsewhere ... show within that time; the
    mount's own changes show at once"."""
    key, later = at("vault", "notes.txt"), at("vault", "later.txt")
    home = ("vault", HOME["vault"])
    async with make_storage(meta_ttl=0.5, negative_ttl=0.5) as storage:
        await write(storage, key, b"12345")
        assert (await storage.attr(key)).size == 5  # our own change: at once
        assert await errno_of(storage.node(later)) == errno.ENOENT
        assert "later.txt" not in dict(await storage.listdir(home))
        await elsewhere(emulator, tmp_path, key, b"1234567890")
        await elsewhere(emulator, tmp_path, later, b"new")
        assert (await storage.attr(key)).size == 5  # cached, within the TTL
        assert await errno_of(storage.node(later)) == errno.ENOENT
        await trio.sleep(0.6)
        assert (await storage.attr(key)).size == 10
        assert (await storage.attr(later)).size == 3
        assert "later.txt" in dict(await storage.listdir(home))


@semantics("Freshness")
@pytest.mark.parametrize("service", SERVICES)
async def test_an_open_file_follows_a_file_appended_elsewhere(
    make_storage: MakeStorage, emulator: Emulator, tmp_path: Path, service: str
) -> None:
    """semantics.md: "An open file follows changes made elsewhere: a read at the end of the
    copy it has asks (within the metadata TTL) whether the file changed on the server, and
    continues from the new version if it did. So `tail -f` follows a file appended ... by a
    job"."""
    key = at(service, "job.log")
    await elsewhere(emulator, tmp_path, key, b"step 1\n")
    async with make_storage(meta_ttl=0.3) as storage:
        tail = await storage.open_read(key)
        assert bytes(await tail.read(0, 4096)) == b"step 1\n"
        await elsewhere(emulator, tmp_path, key, b"step 1\nstep 2\n")
        await trio.sleep(0.4)
        assert bytes(await tail.read(7, 4096)) == b"step 2\n"
        await tail.release()


@semantics("Freshness")
@pytest.mark.parametrize("service", SERVICES)
async def test_a_directory_date_moves_when_the_mount_adds_or_removes_an_entry(
    storage: Storage, service: str
) -> None:
    """semantics.md: "A directory's date (mtime) moves when the mount adds or removes one of
    its entries"."""
    d = at(service, "watched")
    await storage.mkdir(d)
    first = (await storage.attr(d)).mtime_ns
    await trio.sleep(0.01)
    await write(storage, at(service, "watched/new"), b"x")
    added = (await storage.attr(d)).mtime_ns
    await trio.sleep(0.01)
    await storage.unlink(at(service, "watched/new"))
    removed = (await storage.attr(d)).mtime_ns
    assert first < added < removed


# -- Bounds --------------------------------------------------------------------------------


@semantics("Bounds")
async def test_a_silent_server_is_etimedout_within_the_bound(
    make_storage: MakeStorage, emulator: Emulator
) -> None:
    """semantics.md: "Every network wait is bounded by `--timeout` ...: a silent server
    gives **ETIMEDOUT** ..., never a hung shell"."""
    async with make_storage(mount_timeout=0.5) as storage:
        emulator.faults.plan = FaultPlan(latency=10.0)
        try:
            started = trio.current_time()
            assert await errno_of(storage.node(at("arc", "anything"))) == errno.ETIMEDOUT
            assert await errno_of(storage.mkdir(at("arc", "newdir"))) == errno.ETIMEDOUT
            assert trio.current_time() - started < 3.0
        finally:
            emulator.faults.reset()


@semantics("Bounds")
async def test_an_unreachable_server_is_eio_and_idempotent_requests_are_retried(
    storage: Storage, make_storage: MakeStorage, emulator: Emulator
) -> None:
    """semantics.md: "an unreachable one **EIO** ... Idempotent requests (GET, PUT, DELETE,
    property updates) are retried with exponential backoff"."""
    key = at("vault", "retried.txt")
    await write(storage, key, b"retried")
    emulator.faults.plan = FaultPlan(fail_rate=1.0, fail_status=503)
    try:
        assert await errno_of(storage.node(at("vault", "uncached"))) == errno.EIO
    finally:
        emulator.faults.reset()
    emulator.faults.plan = FaultPlan(fail_next=2, fail_status=503, methods=frozenset({"GET"}))
    try:
        async with make_storage() as other:
            assert await read_all(other, key) == b"retried"  # the user never notices
    finally:
        emulator.faults.reset()


@semantics("Bounds")
async def test_df_reports_the_quota_and_use_and_answers_from_cache_when_slow(
    storage: Storage, emulator: Emulator
) -> None:
    """semantics.md: "`df` reports the quota and use of your allocations, answered from the
    cache when the server is slow"."""
    await write(storage, at("arc", "weight.bin"), b"w" * 10_000)
    quota, used = await storage.statfs("arc")
    assert quota > 0
    assert used >= 10_000
    emulator.faults.plan = FaultPlan(latency=10.0)
    try:
        with trio.fail_after(5):
            assert await storage.statfs("arc") == (quota, used)
    finally:
        emulator.faults.reset()


# -- Errno table ---------------------------------------------------------------------------
# Each row of the table, from the page itself: a scenario here, or the mount test that
# checks it (what the FUSE adapter decides), or said plainly to be untested.


async def _enoent(s: Storage, e: Emulator) -> int:
    return await errno_of(s.node(at("arc", "no-such-file")))


async def _enetdown(s: Storage, e: Emulator) -> int:
    await write(s, at("arc", "never-read"), b"on the server\n")
    await s.listdir(("arc", at("arc", "never-read")[1].rpartition("/")[0]))
    s.reads.drop(at("arc", "never-read"))
    e.faults.plan = FaultPlan(fail_next=10**6, fail_status=503)  # the probe fails too
    s.go_offline("the link is cut")
    try:
        return await errno_of(s.open_read(at("arc", "never-read")))
    finally:
        e.faults.reset()


async def _estale(s: Storage, e: Emulator) -> int:
    await write(s, at("vault", "gone"), os.urandom(4 * MiB))
    handle = await s.open_read(at("vault", "gone"))
    await handle.read(0, 10)
    await client_for(e, "vault").delete_node(at("vault", "gone")[1])
    try:
        return await errno_of(handle.read(3 * MiB, 10))
    finally:
        await handle.release()


async def _eexist(s: Storage, e: Emulator) -> int:
    await s.mkdir(at("arc", "d"))
    await write(s, at("arc", "f"), b"x")
    got = await errno_of(s.open_write(at("arc", "f"), truncate=False, create=True, exclusive=True))
    assert got == errno.EEXIST  # O_CREAT|O_EXCL
    return await errno_of(s.mkdir(at("arc", "d")))


async def _enotempty(s: Storage, e: Emulator) -> int:
    await s.mkdir(at("arc", "d"))
    await write(s, at("arc", "d/f"), b"x")
    return await errno_of(s.rmdir(at("arc", "d")))


async def _enotdir(s: Storage, e: Emulator) -> int:
    await write(s, at("arc", "f"), b"x")
    return await errno_of(s.rmdir(at("arc", "f")))


async def _eisdir(s: Storage, e: Emulator) -> int:
    await s.mkdir(at("arc", "d"))
    assert await errno_of(s.open_read(at("arc", "d"))) == errno.EISDIR
    return await errno_of(s.unlink(at("arc", "d")))


async def _eacces(s: Storage, e: Emulator) -> int:
    """Another user's home: the server refuses (no fault injected)."""
    return await errno_of(write(s, ("arc", "home/bob/intrusion.txt"), b"x"))


async def _eperm(s: Storage, e: Emulator) -> int:
    await write(s, at("vault", "f"), b"x")
    assert await errno_of(s.setxattr(at("vault", "f"), "MD5", b"0")) == errno.EPERM
    await s.setxattr(at("vault", "f"), "islocked", b"true")
    # a locked node: EPERM says the table; the emulator's vault answers a plain 403
    # (EACCES), as tests/mount/test_mount_storage.py also allows
    assert await errno_of(s.unlink(at("vault", "f"))) in (errno.EACCES, errno.EPERM)
    return await errno_of(s.chmod(at("vault", "f"), 0o602))


async def _edquot(s: Storage, e: Emulator) -> int:
    e.faults.plan = FaultPlan(fail_rate=1.0, fail_status=413, methods=frozenset({"PUT"}))
    try:
        return await errno_of(write(s, at("arc", "f"), b"x"))
    finally:
        e.faults.reset()


async def _exdev(s: Storage, e: Emulator) -> int:
    await write(s, at("arc", "f"), b"x")
    return await errno_of(s.rename(at("arc", "f"), at("vault", "f")))


async def _einval(s: Storage, e: Emulator) -> int:
    await write(s, at("arc", "f"), b"x")
    assert await errno_of(s.setxattr(at("arc", "f"), "ispublic", b"maybe")) == errno.EINVAL
    return await errno_of(s.mkdir(at("arc", "bell\a")))


async def _enametoolong(s: Storage, e: Emulator) -> int:
    return await errno_of(s.mkdir(at("arc", "n" * 256)))


async def _etimedout(s: Storage, e: Emulator) -> int:
    e.faults.plan = FaultPlan(latency=5.0)
    try:
        return await errno_of(s.node(at("arc", "slow")))
    finally:
        e.faults.reset()


async def _eio(s: Storage, e: Emulator) -> int:
    e.faults.plan = FaultPlan(fail_rate=1.0, fail_status=503)
    try:
        return await errno_of(s.node(at("arc", "unreachable")))
    finally:
        e.faults.reset()


async def _efbig(s: Storage, e: Emulator) -> int:
    handle = await s.open_write(at("arc", "huge"), truncate=True, create=True)
    try:
        return await errno_of(handle.truncate(1 << 50))  # truncate -s 1P
    finally:
        await handle.release()


async def _enodata(s: Storage, e: Emulator) -> int:
    await write(s, at("arc", "f"), b"x")
    assert await errno_of(s.removexattr(at("arc", "f"), "nothing")) == errno.ENODATA
    return await errno_of(s.getxattr(at("arc", "f"), "nothing"))


CORE_ERRNOS: dict[str, Callable[[Storage, Emulator], Awaitable[int]]] = {
    "ENOENT": _enoent,
    "ENETDOWN": _enetdown,
    "ESTALE": _estale,
    "EEXIST": _eexist,
    "ENOTEMPTY": _enotempty,
    "ENOTDIR": _enotdir,
    "EISDIR": _eisdir,
    "EACCES": _eacces,
    "EPERM": _eperm,
    "EDQUOT": _edquot,
    "EXDEV": _exdev,
    "EINVAL": _einval,
    "ENAMETOOLONG": _enametoolong,
    "ETIMEDOUT": _etimedout,
    "EIO": _eio,
    "EFBIG": _efbig,
    "ENODATA": _enodata,
}
#: Rows with a test of their own in this file.
CORE_ERRNO_TESTS = {"EROFS": "test_a_read_only_mount_refuses_every_change_with_erofs"}
#: Rows the kernel side decides, and the mount tests that check them.
MOUNT_ERRNOS = {
    "ENOTSUP": "tests/mount/test_mount_storage.py::test_xattrs_show_properties_and_set_custom_ones",
    "ENOSPC": "tests/mount/test_mount_disk_full.py::"
    "test_a_copy_bigger_than_the_cache_disk_fails_with_enospc_and_the_mount_goes_on",
}
#: Rows no test reaches yet, and why.
UNTESTED_ERRNOS: dict[str, str] = {}


def errno_table() -> list[str]:
    """The errno names in the first column of the page's errno table."""
    text = DOC.read_text()
    table = text.split("## Errno table", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for line in table.splitlines():
        m = re.match(r"\|\s*([A-Z][A-Z /]+?)\s*\|", line)
        if m and m.group(1) != "errno":
            names += [n.strip() for n in m.group(1).split("/")]
    return names


@semantics("Errno table")
def test_every_row_of_the_errno_table_is_accounted_for() -> None:
    """Each errno of the table is checked here, checked through the mount, or listed as
    untested with its reason; a new row fails this test until it is one of those."""
    rows = errno_table()
    assert len(rows) >= 15, rows  # the table was found and read
    groups = [set(CORE_ERRNOS), set(CORE_ERRNO_TESTS), set(MOUNT_ERRNOS), set(UNTESTED_ERRNOS)]
    assert set(rows) == set().union(*groups)
    assert sum(len(g) for g in groups) == len(set().union(*groups))  # each row once
    for test in CORE_ERRNO_TESTS.values():
        assert callable(globals()[test]), test
    for where in MOUNT_ERRNOS.values():  # the named mount tests exist
        path, _, name = where.partition("::")
        source = (DOC.parents[1] / path).read_text()
        assert f"def {name}(" in source, where


@semantics("Errno table")
@pytest.mark.parametrize("name", sorted(CORE_ERRNOS))
async def test_errno_table_row(make_storage: MakeStorage, emulator: Emulator, name: str) -> None:
    """The row of docs/semantics.md's errno table for ``name``: the scenario it names
    fails with that errno (``--timeout`` short, for ETIMEDOUT)."""
    async with make_storage(mount_timeout=0.5) as storage:
        assert await CORE_ERRNOS[name](storage, emulator) == getattr(errno, name)


@semantics("Errno table")
async def test_a_read_only_mount_refuses_every_change_with_erofs(
    make_storage: MakeStorage, storage: Storage, emulator: Emulator
) -> None:
    """semantics.md: "EROFS: any change on a `--read-only` mount" (and reading still
    works)."""
    key = at("arc", "existing.txt")
    await write(storage, key, b"readable")
    async with make_storage(read_only=True) as ro:
        changes: list[Callable[[], Awaitable[object]]] = [
            lambda: ro.open_write(at("arc", "new.txt"), truncate=True, create=True),
            lambda: ro.open_write(key, truncate=False, create=False),
            lambda: ro.mkdir(at("arc", "newdir")),
            lambda: ro.unlink(key),
            lambda: ro.rename(key, at("arc", "renamed.txt")),
            lambda: ro.symlink(at("arc", "link"), "existing.txt"),
            lambda: ro.chmod(key, 0o604),
            lambda: ro.setxattr(key, "quality", b"x"),
            lambda: ro.removexattr(key, "MD5"),
            lambda: ro.set_mtime(key, A_DATE),
            lambda: ro.truncate(key, 0),
        ]
        for change in changes:
            assert await errno_of(change()) == errno.EROFS
        assert await read_all(ro, key) == b"readable"
    assert server_bytes(emulator, key) == b"readable"
    assert record(emulator, at("arc", "newdir")) is None
