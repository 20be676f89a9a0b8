"""Job arrays (docs/sessions.md, *Job arrays*) through the sessions tree and the storage
core, against the emulator in process: headless replicas run as local processes.

Each test names the documented behaviour it checks; what it asserts is what a user
sees: files in ``sessions/``, manifests on arc, sessions on the server, outputs.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
import trio

from canfarfs import errors
from canfarfs.emulator.app import Emulator
from canfarfs.emulator.faults import FaultPlan
from canfarfs.fs.arcfiles import StorageArcFiles
from canfarfs.fs.storage import Storage, StorageConfig
from canfarfs.fs.virtual import VirtualHandle
from canfarfs.net import HTTP, Credentials, RetryPolicy
from canfarfs.sessions import SessionsTree
from canfarfs.sessions.arrays import expand
from canfarfs.skaha import SkahaClient
from canfarfs.vospace.client import VOSpaceClient
from tests.emulator_util import BASE, TOKEN, USER
from tests.skaha_util import ASTROML, until
from tests.storage_util import MakeStorage
from tests.vospace_util import client_for

W = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
HOME = f"home/{USER}"


@pytest.fixture
async def storage(emulator: Emulator, tmp_path: Path) -> AsyncIterator[Storage]:
    http = HTTP(
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=emulator.app)),
        Credentials(token=TOKEN),
        retry=RetryPolicy(base_delay=0.001),
    )
    clients = {s: VOSpaceClient(http, f"{BASE}/{s}", s) for s in ("arc", "vault")}
    async with trio.open_nursery() as nursery:
        yield Storage(
            clients,
            StorageConfig(cache_dir=tmp_path / "cache", user=USER, meta_ttl=0.05),
            nursery,
        )
        nursery.cancel_scope.cancel()
    await http.aclose()


@pytest.fixture
def arc(storage: Storage) -> StorageArcFiles:
    return StorageArcFiles(storage)


@pytest.fixture
async def tree(skaha: SkahaClient, arc: StorageArcFiles) -> SessionsTree:
    return SessionsTree(skaha, user=USER, list_ttl=0.1, arc=arc)


async def write(tree: SessionsTree, name: str, data: bytes) -> None:
    """``cat > name``: create, write, close (the close's error raises)."""
    handle: VirtualHandle = await tree.create(name, W)
    try:
        await handle.write(0, data)
        await handle.flush()
    finally:
        await handle.release()


async def read(tree: SessionsTree, path: str) -> str:
    handle = await tree.open(path, os.O_RDONLY)
    out, offset = b"", 0
    while chunk := await handle.read(offset, 65536):
        out += chunk
        offset += len(chunk)
    await handle.release()
    return out.decode()


async def inputs(arc: StorageArcFiles, count: int, folder: str = "raw") -> list[str]:
    await arc.makedirs(f"{HOME}/{folder}")
    for i in range(count):
        await arc.write(f"{HOME}/{folder}/f{i:02}.fits", f"input {i}\n".encode())
    return [f"/arc/{HOME}/{folder}/f{i:02}.fits" for i in range(count)]


def spec(name: str, cmd: str, replicas: int, glob: str, *extra: str) -> bytes:
    lines = [
        f"name: {name}",
        f"image: {ASTROML}",
        "kind: headless",
        f"cmd: {cmd}",
        f"replicas: {replicas}",
        f"inputs: {glob}",
        *extra,
    ]
    return ("\n".join(lines) + "\n").encode()


async def status_line(tree: SessionsTree, name: str) -> str:
    return (await read(tree, f"arrays/{name}/status")).splitlines()[0]


async def settled(tree: SessionsTree, name: str, head: str, within: float = 20) -> None:
    async def check() -> bool:
        return await status_line(tree, name) == head

    await until(check, within)


# -- globs ---------------------------------------------------------------------------------


async def test_globs_expand_through_the_mounts_view_sorted_and_each_once(
    arc: StorageArcFiles,
) -> None:
    """Shell rules per component, hidden names only by a pattern with a dot, ``**`` any
    depth, directories match, nothing in a missing folder; sorted; each path once."""
    await arc.makedirs(f"{HOME}/raw/night2/deep")
    for rel in ("raw/b.fits", "raw/a.fits", "raw/.hidden.fits", "raw/notes.txt"):
        await arc.write(f"{HOME}/{rel}", b"x")
    await arc.write(f"{HOME}/raw/night2/c.fits", b"x")
    await arc.write(f"{HOME}/raw/night2/deep/d.fits", b"x")
    top = f"/arc/{HOME}/raw"

    async def match(*globs: str) -> list[str]:
        return [p.removeprefix(top + "/") for p in await expand(globs, arc)]

    assert await match(f"{top}/*.fits") == ["a.fits", "b.fits"]
    assert await match(f"{top}/.*.fits") == [".hidden.fits"]
    assert await match(f"{top}/*.fits", f"{top}/a.*") == ["a.fits", "b.fits"]
    assert await match(f"{top}/**/*.fits") == [
        "a.fits",
        "b.fits",
        "night2/c.fits",
        "night2/deep/d.fits",
    ]
    assert await match(f"{top}/night?") == ["night2"]
    assert await match(f"{top}/[ab].fits", f"{top}/notes.txt") == ["a.fits", "b.fits", "notes.txt"]
    assert await match(f"{top}/missing/*.fits", f"{top}/absent.fits") == []


# -- launching -----------------------------------------------------------------------------


async def test_an_array_shares_its_inputs_out_and_is_shown_as_one(
    tree: SessionsTree, arc: StorageArcFiles
) -> None:
    """Manifests under ~/.canfarfs/arrays/<name>-<stamp>/, one path a line; each replica
    sees INPUTS_FILE, REPLICA_ID and REPLICA_COUNT; arrays/<name>/ counts the states,
    lists the ids, links each replica, and prefixes the logs."""
    files = await inputs(arc, 10)
    await write(
        tree,
        "calib.yaml",
        spec("calib", "/usr/bin/env", 3, f"/arc/{HOME}/raw/*.fits", "split: stripe"),
    )
    ids = (await read(tree, "calib.yaml.ids")).split()
    assert len(ids) == 3
    assert "arrays" in [n for n, _ in await tree.listdir("")]
    assert [n for n, _ in await tree.listdir("arrays")] == ["calib"]
    await settled(tree, "calib", "3 total: 3 Completed")
    assert (await read(tree, "arrays/calib/ids")).split() == ids
    status = (await read(tree, "arrays/calib/status")).splitlines()
    assert status[1:] == [f"replica {k}: Completed {ids[k - 1]}" for k in (1, 2, 3)]
    names = {n: a for n, a in await tree.listdir("arrays/calib")}
    assert set(names) == {"status", "ids", "failed", "logs", "retry", "1", "2", "3"}
    assert stat.S_ISLNK(names["2"].mode)
    assert await tree.readlink("arrays/calib/2") == f"../../{ids[1]}"
    assert names["status"].size == len((await read(tree, "arrays/calib/status")).encode())
    assert await read(tree, "arrays/calib/failed") == ""

    [folder] = [n for n, d in await arc.entries(f"{HOME}/.canfarfs/arrays") if d]
    assert re.fullmatch(r"calib-\d{8}T\d{6}Z", folder)
    for k in (1, 2, 3):
        manifest = (await arc.read(f"{HOME}/.canfarfs/arrays/{folder}/{k}.txt")).decode()
        assert manifest.splitlines() == files[k - 1 :: 3]  # stripe
    logs = (await read(tree, "arrays/calib/logs")).splitlines()
    for k in (1, 2, 3):
        mine = [line[len(f"[{k}] ") :] for line in logs if line.startswith(f"[{k}] ")]
        assert f"INPUTS_FILE=/arc/{HOME}/.canfarfs/arrays/{folder}/{k}.txt" in mine
        assert f"REPLICA_ID={k}" in mine
        assert "REPLICA_COUNT=3" in mine
    assert [line[:3] for line in logs] == sorted(line[:3] for line in logs)  # replica order


async def test_a_glob_that_matches_nothing_launches_nothing(
    tree: SessionsTree, skaha: SkahaClient, arc: StorageArcFiles
) -> None:
    """EINVAL at close, and ``.error`` says why; no session, no manifest."""
    await arc.makedirs(f"{HOME}/raw")
    with pytest.raises(errors.InvalidArgument):
        await write(tree, "none.yaml", spec("none", "/bin/true", 4, f"/arc/{HOME}/raw/*.fits"))
    error = await read(tree, "none.yaml.error")
    assert "none.yaml was not launched" in error
    assert "nothing matches" in error
    with pytest.raises(errors.CanfarfsError) as info:  # reading .ids fails with its errno
        await tree.open("none.yaml.ids", os.O_RDONLY)
    assert info.value.errno == errno.EINVAL
    assert await skaha.list() == []
    assert not await arc.exists(f"{HOME}/.canfarfs/arrays")


async def test_more_replicas_than_inputs_launch_one_replica_per_input(
    tree: SessionsTree, arc: StorageArcFiles
) -> None:
    """The surplus replicas would have nothing to do: they are not launched."""
    await inputs(arc, 2)
    await write(tree, "few.yaml", spec("few", "/bin/true", 5, f"/arc/{HOME}/raw/*.fits"))
    assert len((await read(tree, "few.yaml.ids")).split()) == 2
    await settled(tree, "few", "2 total: 2 Completed")


async def test_manifests_that_cannot_be_written_launch_nothing(
    tree: SessionsTree, skaha: SkahaClient, arc: StorageArcFiles, emulator: Emulator
) -> None:
    """Over quota: close fails with EDQUOT and ``.error`` says the array was not
    launched; no session starts."""
    await inputs(arc, 4)
    emulator.faults.plan = FaultPlan(
        fail_next=1000, fail_status=413, methods=frozenset({"PUT"}), path_prefix="/arc"
    )
    with pytest.raises(errors.QuotaExceeded):
        await write(tree, "full.yaml", spec("full", "/bin/true", 2, f"/arc/{HOME}/raw/*"))
    emulator.faults.reset()
    assert "full.yaml was not launched" in await read(tree, "full.yaml.error")
    assert await skaha.list() == []


# -- the loop: fail, retry, end -------------------------------------------------------------


def job_script(tmp: Path) -> Path:
    """One output per input (appended, so twice would show); replica 2 fails while
    ``fail-2`` exists, before doing anything."""
    script = tmp / "job.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$REPLICA_ID" = 2 ] && [ -e {tmp}/fail-2 ] && exit 3\n'
        "arc=${ARC_ROOT:-/arc}\n"
        "while read -r f; do\n"
        "  local=$arc${f#/arc}\n"
        f'  echo "$REPLICA_ID $(cat "$local")" >> {tmp}/out/$(basename "$f").out\n'
        'done < "$arc${INPUTS_FILE#/arc}"\n'
    )
    script.chmod(0o755)
    (tmp / "out").mkdir()
    return script


async def test_retry_relaunches_only_the_failed_replica_with_its_share(
    tree: SessionsTree, arc: StorageArcFiles, tmp_path: Path
) -> None:
    files = await inputs(arc, 12)
    script = job_script(tmp_path)
    (tmp_path / "fail-2").touch()
    await write(tree, "job.yaml", spec("job", str(script), 4, f"/arc/{HOME}/raw/*.fits"))
    first = (await read(tree, "job.yaml.ids")).split()
    await settled(tree, "job", "4 total: 3 Completed, 1 Failed")
    share_2 = files[3:6]  # chunk: replica 2 has the second three
    assert (await read(tree, "arrays/job/failed")).splitlines() == share_2
    assert sorted(os.listdir(tmp_path / "out")) == sorted(
        Path(f).name + ".out" for f in files if f not in share_2
    )

    (tmp_path / "fail-2").unlink()
    await tree.touch("arrays/job/retry")
    ids = (await read(tree, "arrays/job/ids")).split()
    assert len(ids) == 5  # replica by replica, attempts in order: the new id is 2's
    assert [ids[0], ids[1], ids[3], ids[4]] == first[:1] + first[1:2] + first[2:]
    assert ids[2] not in first
    await settled(tree, "job", "4 total: 4 Completed")
    assert await read(tree, "arrays/job/failed") == ""
    assert await tree.readlink("arrays/job/2") == f"../../{ids[2]}"
    assert "replica 2: Completed" in await read(tree, "arrays/job/status")
    assert "(attempt 2)" in await read(tree, "arrays/job/status")
    outputs = {p.name: p.read_text() for p in (tmp_path / "out").iterdir()}
    assert sorted(outputs) == sorted(Path(f).name + ".out" for f in files)
    for i, f in enumerate(files):  # every input processed exactly once, by its replica
        assert outputs[Path(f).name + ".out"] == f"{i // 3 + 1} input {i}\n"

    await tree.touch("arrays/job/retry")  # nothing failed: nothing relaunched
    assert len((await read(tree, "arrays/job/ids")).split()) == 5


async def test_rmdir_ends_every_replica_of_a_running_array(
    tree: SessionsTree, skaha: SkahaClient, arc: StorageArcFiles
) -> None:
    await inputs(arc, 3)
    await write(
        tree, "long.yaml", spec("long", "/bin/sleep", 3, f"/arc/{HOME}/raw/*", "args: ['60']")
    )
    await settled(tree, "long", "3 total: 3 Running")
    await tree.rmdir("arrays/long")

    async def gone() -> bool:
        return not [s for s in await skaha.list() if s.status in ("Running", "Pending")]

    await until(gone)
    assert [n for n, _ in await tree.listdir("arrays")] == []
    with pytest.raises(errors.NotFound):
        await tree.attr("arrays/long")


async def test_a_later_mount_finds_the_array_again(
    tree: SessionsTree, skaha: SkahaClient, arc: StorageArcFiles
) -> None:
    """The record beside the manifests (array.json) brings the array back."""
    await inputs(arc, 4)
    await write(tree, "again.yaml", spec("again", "/bin/true", 2, f"/arc/{HOME}/raw/*"))
    ids = (await read(tree, "arrays/again/ids")).split()
    later = SessionsTree(skaha, user=USER, list_ttl=0.1, arc=arc)
    assert [n for n, _ in await later.listdir("arrays")] == ["again"]
    assert (await read(later, "arrays/again/ids")).split() == ids
    await settled(later, "again", "2 total: 2 Completed")


async def test_array_files_refuse_what_they_cannot_do(
    tree: SessionsTree, arc: StorageArcFiles
) -> None:
    await inputs(arc, 2)
    await write(tree, "ro.yaml", spec("ro", "/bin/true", 2, f"/arc/{HOME}/raw/*"))
    with pytest.raises(errors.NotPermitted):
        await tree.open("arrays/ro/status", os.O_WRONLY)
    with pytest.raises(errors.NotPermitted):
        await tree.create("arrays/ro/new", W)
    with pytest.raises(errors.NotPermitted):
        await tree.mkdir("arrays/x")
    with pytest.raises(errors.NotFound):
        await tree.attr("arrays/nope/status")
    with pytest.raises(errors.NotPermitted):
        await tree.rmdir("arrays")


async def test_two_retries_at_once_relaunch_the_failed_replica_once(
    tree: SessionsTree, arc: StorageArcFiles, tmp_path: Path
) -> None:
    await inputs(arc, 8)
    script = job_script(tmp_path)
    (tmp_path / "fail-2").touch()
    await write(tree, "twice.yaml", spec("twice", str(script), 4, f"/arc/{HOME}/raw/*.fits"))
    await settled(tree, "twice", "4 total: 3 Completed, 1 Failed")
    (tmp_path / "fail-2").unlink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tree.touch, "arrays/twice/retry")
        nursery.start_soon(tree.touch, "arrays/twice/retry")
    assert len((await read(tree, "arrays/twice/ids")).split()) == 5
    await settled(tree, "twice", "4 total: 4 Completed")


async def test_manifests_are_on_the_server_before_the_launch_even_with_write_back(
    skaha: SkahaClient, make_storage: MakeStorage, emulator: Emulator
) -> None:
    """A write-back mount queues what it closes; the manifests must not wait in that
    queue while the sessions that read them start."""
    async with make_storage(writeback=True) as wb:
        arc = StorageArcFiles(wb)
        tree = SessionsTree(skaha, user=USER, list_ttl=0.1, arc=arc)
        await inputs(arc, 3)
        emulator.faults.plan = FaultPlan(latency=0.3, methods=frozenset({"PUT"}))
        await write(tree, "wb.yaml", spec("wb", "/bin/true", 3, f"/arc/{HOME}/raw/*.fits"))
        emulator.faults.reset()
        [folder] = [n for n, d in await arc.entries(f"{HOME}/.canfarfs/arrays") if d]
        server = client_for(emulator, "arc")
        for k in (1, 2, 3):
            node = await server.get_node(f"{HOME}/.canfarfs/arrays/{folder}/{k}.txt")
            assert node.length == len(f"/arc/{HOME}/raw/f{k - 1:02}.fits\n")
