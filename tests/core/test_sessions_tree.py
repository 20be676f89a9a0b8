"""The ``sessions/`` tree through its VirtualTree interface, against the emulator in-process.

Written from docs/sessions.md; each test names the behaviour it checks. File operations
are done the way the kernel sends them (create or open+O_TRUNC, write, flush, release).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from typing import Any

import pytest
import trio

from canfarfs import errors
from canfarfs.emulator.app import Emulator
from canfarfs.emulator.faults import FaultPlan
from canfarfs.fs.virtual import VirtualHandle, VirtualTree
from canfarfs.sessions import SessionsTree
from canfarfs.sessions.memfiles import FileTooLarge
from canfarfs.sessions.tree import CONTENT_AGE
from canfarfs.skaha import SessionSpec, SkahaClient
from tests.emulator_util import USER
from tests.skaha_util import ASTROML, PRIVATE, SECRET, TERMINAL, until

W = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
HELLO = (f"name: hello\nimage: {TERMINAL}\ncmd: echo\nargs: Hello, World!\n").encode()


@pytest.fixture
async def tree(skaha: SkahaClient) -> SessionsTree:
    return SessionsTree(skaha, user=USER, list_ttl=0.2)


def _typed(t: SessionsTree) -> VirtualTree:
    return t  # the tree satisfies the FUSE adapter's protocol (checked by mypy)


async def exists(tree: SessionsTree, path: str) -> bool:
    try:
        await tree.attr(path)
    except errors.NotFound:
        return False
    return True


async def write(tree: SessionsTree, name: str, data: bytes, flags: int = W) -> None:
    """``cat > name``: create (or open with O_TRUNC), write, close (flush errors raise)."""
    handle: VirtualHandle
    if await exists(tree, name):
        handle = await tree.open(name, flags)
    else:
        handle = await tree.create(name, flags)
    try:
        if data:
            assert await handle.write(0, data) == len(data)
        await handle.flush()
    finally:
        await handle.release()


async def read(tree: SessionsTree, path: str) -> bytes:
    handle = await tree.open(path, os.O_RDONLY)
    out, offset = b"", 0
    while chunk := await handle.read(offset, 4096):
        out += chunk
        offset += len(chunk)
    await handle.flush()
    await handle.release()
    return out


async def names(tree: SessionsTree, path: str = "") -> list[str]:
    return [n for n, _ in await tree.listdir(path)]


async def session_ids(tree: SessionsTree) -> list[str]:
    return [
        n
        for n, a in await tree.listdir("")
        if a.is_dir and not n.startswith("by-") and n != "arrays"
    ]


async def launch(tree: SessionsTree, name: str, data: bytes) -> list[str]:
    await write(tree, name, data)
    return (await read(tree, f"{name}.ids")).decode().split()


async def wait_status(tree: SessionsTree, sid: str, *wanted: str) -> str:
    async def reached() -> bool:
        return (await read(tree, f"{sid}/status")).decode().strip() in wanted

    await until(reached)
    return (await read(tree, f"{sid}/status")).decode().strip()


def spec_text(**fields: Any) -> bytes:
    base: dict[str, Any] = {"name": "job", "image": TERMINAL, "cmd": "true"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


# -- layout and reading ------------------------------------------------------------------------


async def test_layout_indexes_and_platform_files(tree: SessionsTree, skaha: SkahaClient) -> None:
    _typed(tree)
    root = await names(tree)
    assert root[:7] == [
        "by-name",
        "by-kind",
        "by-status",
        "arrays",
        "images",
        "context",
        "stats",
    ]
    assert await names(tree, "by-kind") == sorted(
        ["desktop", "notebook", "carta", "headless", "firefly", "contributed"]
    )
    assert set(await names(tree, "by-status")) >= {
        "Pending",
        "Running",
        "Completed",
        "Failed",
        "Terminating",
        "Succeeded",
        "Error",
    }
    assert await names(tree, "by-kind/notebook") == []
    assert json.loads(await read(tree, "images")) == await skaha.images()
    assert json.loads(await read(tree, "context")) == await skaha.context()
    assert set(json.loads(await read(tree, "stats"))) == {"cores", "ram"}
    for name, a in await tree.listdir(""):
        if not a.is_dir:
            assert a.size == len(await read(tree, name)), name
    assert stat.S_IMODE((await tree.attr("images")).mode) == 0o444


async def elsewhere(skaha: SkahaClient, **fields: Any) -> str:
    """A session launched by another client (the canfar CLI, the portal)."""
    fields = {"name": "other", "image": TERMINAL, **fields}
    [sid] = (await skaha.create(SessionSpec.model_validate(fields))).ids
    return sid


async def test_session_directory_files(tree: SessionsTree, skaha: SkahaClient) -> None:
    hl = await elsewhere(skaha, name="hello", cmd="echo", args="Hello, World!")
    nb = await elsewhere(skaha, name="nb", image=ASTROML, kind="notebook")
    await wait_status(tree, hl, "Completed")
    await wait_status(tree, nb, "Running")
    assert await names(tree, hl) == ["info", "status", "events", "logs"]
    assert await names(tree, nb) == ["info", "status", "events", "logs", "url"]
    info = json.loads(await read(tree, f"{hl}/info"))
    assert info == (await skaha.info(hl)).raw
    assert (await read(tree, f"{hl}/info")).startswith(b'{\n  "id": ')
    assert await read(tree, f"{hl}/status") == b"Completed\n"
    assert await read(tree, f"{hl}/logs") == b"Hello, World!\n"
    assert (await read(tree, f"{hl}/events")).decode() == await skaha.events(hl)
    url = (await read(tree, f"{nb}/url")).decode()
    assert url == (await skaha.info(nb)).connect_url + "\n"  # type: ignore[operator]
    for sid in (hl, nb):
        for name, a in await tree.listdir(sid):
            assert a.size == len(await read(tree, f"{sid}/{name}")), name
            assert a.size == (await tree.attr(f"{sid}/{name}")).size
    assert await names(tree, "by-name/hello") == [hl]
    assert await names(tree, "by-kind/notebook") == [nb]
    assert nb in await names(tree, "by-status/Running")
    link = f"by-status/Completed/{hl}"
    assert (await tree.attr(link)).is_link
    assert await tree.readlink(link) == f"../../{hl}"
    assert (await tree.attr(link)).size == len(f"../../{hl}")
    with pytest.raises(errors.NotFound):
        await tree.attr(f"{hl}/url")
    with pytest.raises(errors.NotFound):
        await tree.attr(f"{hl}/spec")  # not launched through this mount


async def test_created_and_removed_elsewhere_show_within_seconds(skaha: SkahaClient) -> None:
    tree = SessionsTree(skaha, user=USER)  # the default 2 s list TTL
    assert await session_ids(tree) == []
    sid = await elsewhere(skaha, cmd="sleep", args="30")

    async def listed() -> bool:
        return sid in await session_ids(tree)

    with trio.fail_after(3):
        await until(listed)
    await skaha.destroy(sid)

    async def unlisted() -> bool:
        return sid not in await session_ids(tree)

    with trio.fail_after(3):
        await until(unlisted)
    with pytest.raises(errors.NotFound):
        await read(tree, f"{sid}/info")


async def test_content_is_at_most_a_second_old_at_open(
    tree: SessionsTree,
    skaha: SkahaClient,
    emulator: Emulator,
) -> None:
    """docs/sessions.md, Freshness: an open within CONTENT_AGE of the last fetch reuses it
    (no request); after that, the open fetches anew and shows the change."""
    sid = await elsewhere(skaha, name="nb", image=ASTROML, kind="notebook")
    assert await read(tree, f"{sid}/status") == b"Pending\n"
    before = emulator.faults.requests
    assert await read(tree, f"{sid}/info")  # fetched with status: reused
    assert (await tree.attr(f"{sid}/status")).size == len(b"Pending\n")
    assert emulator.faults.requests == before
    await until(lambda: _running(skaha, sid))
    await trio.sleep(CONTENT_AGE)
    assert await read(tree, f"{sid}/status") == b"Running\n"  # the open fetched anew
    assert (await tree.attr(f"{sid}/status")).size == len(b"Running\n")


async def _running(skaha: SkahaClient, sid: str) -> bool:
    return (await skaha.info(sid)).status == "Running"


async def test_logs_follow_like_tail_f(tree: SessionsTree, emulator: Emulator) -> None:
    """Poll the size (as tail -f does), read what is new: no gap, no repeat, to the end."""
    home = emulator.config.root / "arc" / "home" / USER
    home.mkdir(parents=True, exist_ok=True)
    script = home / "count.sh"
    script.write_text(
        "#!/bin/sh\ni=1\nwhile [ $i -le 12 ]; do echo line $i; i=$((i+1)); sleep 0.1; done\n"
    )
    script.chmod(0o755)
    [sid] = await launch(tree, "count.yaml", spec_text(name="count", cmd=str(script)))
    assert await tree.attr_ttl(f"{sid}/logs") <= 0.5
    handle = await tree.open(f"{sid}/logs", os.O_RDONLY)
    assert handle.direct_io
    seen, sizes = b"", []
    with trio.fail_after(20):
        while True:
            size = (await tree.attr(f"{sid}/logs")).size
            sizes.append(size)
            if size > len(seen):
                seen += await handle.read(len(seen), size - len(seen))
            done = (await read(tree, f"{sid}/status")).strip() in (b"Completed", b"Failed")
            if done and (await tree.attr(f"{sid}/logs")).size == len(seen):
                break
            await trio.sleep(0.2)
    await handle.release()
    assert seen == b"".join(f"line {i}\n".encode() for i in range(1, 13))
    assert sizes == sorted(sizes)
    assert len(set(sizes)) > 2  # it grew while running
    # Reads past the snapshot fetch newer output; an ended session's log never shrinks.
    await tree.rmdir(sid)
    assert tree.content.peek((sid, "logs")) is None


async def test_log_handle_reads_past_its_snapshot(tree: SessionsTree) -> None:
    [sid] = await launch(tree, "s.yaml", spec_text(name="s", cmd="sleep", args="1"))
    handle = await tree.open(f"{sid}/logs", os.O_RDONLY)
    assert await handle.read(0, 100) == b""
    await wait_status(tree, sid, "Completed")
    await trio.sleep(0.6)
    assert await handle.read(0, 100) == b""  # nothing printed: still empty, no error
    await handle.release()


# -- launching -----------------------------------------------------------------------------


async def test_launch_success(tree: SessionsTree, skaha: SkahaClient) -> None:
    ids = await launch(tree, "hello.yaml", HELLO)
    assert len(ids) == 1
    sid = ids[0]
    assert (await tree.attr(sid)).is_dir  # at once
    assert await read(tree, "hello.yaml") == HELLO  # reads back as written
    assert await read(tree, f"{sid}/spec") == HELLO
    assert "hello.yaml.error" not in await names(tree)
    assert await names(tree, "by-name/hello") == [sid]
    await wait_status(tree, sid, "Completed")
    assert await read(tree, f"{sid}/logs") == b"Hello, World!\n"
    assert [s.id for s in await skaha.list()] == [sid]
    assert await tree.attr_ttl("hello.yaml") == 0
    assert await tree.attr_ttl("hello.yaml.ids") == 0


async def test_replicas_and_their_replica_id(tree: SessionsTree) -> None:
    text = (
        f"name: rep\nimage: {TERMINAL}\ncmd: printenv\nargs: [REPLICA_ID, REPLICA_COUNT]\n"
        "replicas: 3\n"
    ).encode()
    ids = await launch(tree, "rep.yaml", text)
    assert len(ids) == 3
    assert await names(tree, "by-name") == ["rep-1", "rep-2", "rep-3"]
    for i, sid in enumerate(ids, start=1):
        assert await names(tree, f"by-name/rep-{i}") == [sid]
        await wait_status(tree, sid, "Completed")
        assert await read(tree, f"{sid}/logs") == f"{i}\n3\n".encode()
        assert await read(tree, f"{sid}/spec") == text


async def test_notebooks_flexible_and_fixed(tree: SessionsTree, skaha: SkahaClient) -> None:
    flex = await launch(
        tree, "nb.yaml", f"name: my-notebook\nimage: {ASTROML}\nkind: notebook\n".encode()
    )
    fixed = await launch(
        tree,
        "nb-fixed.json",
        json.dumps(
            {"name": "my-notebook", "image": ASTROML, "kind": "notebook", "cores": 2, "ram": 4}
        ).encode(),
    )
    assert (await skaha.info(flex[0])).is_fixed_resources is False
    assert (await skaha.info(fixed[0])).is_fixed_resources is True
    assert sorted(await names(tree, "by-name/my-notebook")) == sorted(flex + fixed)
    assert sorted(await names(tree, "by-kind/notebook")) == sorted(flex + fixed)
    await wait_status(tree, flex[0], "Running")
    assert (await read(tree, f"{flex[0]}/url")).startswith(b"http")


async def test_one_write_launches_once(tree: SessionsTree, skaha: SkahaClient) -> None:
    handle = await tree.create("once.yaml", W)
    await handle.write(0, spec_text(name="once"))
    await handle.flush()
    await handle.flush()  # closing a duplicate descriptor: no new launch
    await handle.release()
    assert len(await skaha.list()) == 1
    assert await read(tree, "once.yaml") == spec_text(name="once")  # reading launches nothing
    reader = await tree.open("once.yaml", os.O_RDWR)  # opened for writing, nothing written
    await reader.flush()
    await reader.release()
    await tree.touch("once.yaml")
    assert len(await skaha.list()) == 1
    await write(tree, "once.yaml", spec_text(name="once"))  # a new write: a new launch
    assert len(await skaha.list()) == 2
    handle = await tree.open("once.yaml", os.O_WRONLY | os.O_APPEND)
    await handle.write(0, b"\n")  # `>>` appends, whatever the offset
    await handle.flush()
    await handle.release()
    assert len(await skaha.list()) == 3
    assert await read(tree, "once.yaml") == spec_text(name="once") + b"\n"


async def test_failed_close_repeats_its_error_without_relaunching(tree: SessionsTree) -> None:
    handle = await tree.create("bad.yaml", W)
    await handle.write(0, b"name: x\n")
    with pytest.raises(errors.InvalidArgument):
        await handle.flush()
    with pytest.raises(errors.InvalidArgument):
        await handle.flush()
    await handle.release()
    assert await read(tree, "bad.yaml") == b"name: x\n"  # a reader's close is fine


async def test_vim_save_launches_once(tree: SessionsTree, skaha: SkahaClient) -> None:
    """vim: swap file, 4913 probe, rename to backup, write the new file, drop the backup."""
    await write(tree, ".job.yaml.swp", b"\x00vim swap" * 100)
    await write(tree, "4913", b"")
    await tree.unlink("4913")
    await write(tree, "job.yaml", spec_text(name="v1"))
    assert len(await skaha.list()) == 1
    for version in ("v2", "v3"):
        await tree.rename("job.yaml", "job.yaml~")
        await write(tree, "job.yaml", spec_text(name=version))
        await tree.unlink("job.yaml~")
    await tree.unlink(".job.yaml.swp")
    assert sorted(s.name or "" for s in await skaha.list()) == ["v1", "v2", "v3"]
    assert await names(tree, "") == [
        n for n in await names(tree, "") if not n.startswith((".", "4913"))
    ]


async def test_nano_and_rename_into_place(tree: SessionsTree, skaha: SkahaClient) -> None:
    await write(tree, "n.yaml", spec_text(name="n1"))
    await write(tree, "n.yaml", spec_text(name="n2"), os.O_WRONLY | os.O_TRUNC)  # nano
    assert sorted(s.name or "" for s in await skaha.list()) == ["n1", "n2"]
    await write(tree, ".goutputstream-ABC", spec_text(name="g1"))  # gedit/VS Code style
    assert len(await skaha.list()) == 2
    await tree.rename(".goutputstream-ABC", "g.yaml")
    assert len(await skaha.list()) == 3
    assert len((await read(tree, "g.yaml.ids")).split()) == 1
    await tree.rename("g.yaml", "h.yaml")  # moving a launched spec launches nothing
    assert len(await skaha.list()) == 3
    assert "h.yaml.ids" in await names(tree)
    assert "g.yaml.ids" not in await names(tree)
    await write(tree, ".tmp", b"name: [")
    with pytest.raises(errors.InvalidArgument):
        await tree.rename(".tmp", "bad.yaml")
    assert await read(tree, "bad.yaml") == b"name: ["
    assert b"invalid YAML" in await read(tree, "bad.yaml.error")


async def test_side_and_hidden_files_never_launch(tree: SessionsTree, skaha: SkahaClient) -> None:
    for name in (".hidden.yaml", "x.yaml~", "#x.yaml#", "4913", ".x.yaml.swp"):
        await write(tree, name, spec_text())
        assert await read(tree, name) == spec_text()
        assert f"{name}.ids" not in await names(tree)
    assert await skaha.list() == []


BAD_SPECS: dict[str, bytes] = {
    "invalid-yaml.yaml": b"name: [unclosed\nimage: skaha/terminal\n",
    "invalid-json.json": b'{"name": "x", "image": ',
    "unknown-field.yaml": f"name: x\nimage: {TERMINAL}\ncolour: red\n".encode(),
    "wrong-type.yaml": f"name: x\nimage: {TERMINAL}\ncores: four\n".encode(),
    "missing-image.yaml": b"name: x\n",
    "missing-name.json": b'{"image": "skaha/terminal:1.1.1"}',
    "bad-kind.yaml": f"name: x\nimage: {TERMINAL}\nkind: laptop\n".encode(),
    "negative-cores.yaml": f"name: x\nimage: {TERMINAL}\ncores: -2\n".encode(),
    "replicas-0.yaml": f"name: x\nimage: {TERMINAL}\nreplicas: 0\n".encode(),
    "env-equals.yaml": f"name: x\nimage: {TERMINAL}\nenv: {{A: x=y}}\n".encode(),
    "arg-space.yaml": f"name: x\nimage: {TERMINAL}\ncmd: echo\nargs: ['a b']\n".encode(),
    "bad-name.yaml": f"name: my_job\nimage: {TERMINAL}\n".encode(),
    "huge.yaml": f"name: x\nimage: {TERMINAL}\n#".encode() + b"x" * 70_000 + b"\n",
    "binary.yaml": bytes(range(256)) * 8,
    "not-utf8.json": b'{"name": "\xff\xfe"}',
    "empty.yaml": b"",
    "blank.yml": b"  \n\n",
    "a-list.yaml": b"- name: x\n- image: y\n",
    "a-scalar.json": b'"just text"',
    "aliases.yaml": b"base: &b x\nname: *b\nimage: skaha/terminal\n",
    "two-docs.yaml": f"name: x\nimage: {TERMINAL}\n---\nname: y\n".encode(),
    "cmd-on-notebook.yaml": f"name: x\nimage: {ASTROML}\nkind: notebook\ncmd: ls\n".encode(),
    "desktop-replicas.yaml": f"name: x\nimage: {ASTROML}\nkind: desktop\nreplicas: 2\n".encode(),
}


@pytest.mark.parametrize("name", sorted(BAD_SPECS))
async def test_malformed_specs_fail_with_einval(
    tree: SessionsTree,
    skaha: SkahaClient,
    name: str,
) -> None:
    data = BAD_SPECS[name]
    with pytest.raises(errors.InvalidArgument) as info:
        await write(tree, name, data)
    assert errors.errno_for(info.value) == errno.EINVAL
    message = (await read(tree, f"{name}.error")).decode()
    assert message.startswith(f"{name} was not launched: the spec is invalid.\n")
    assert len(message.splitlines()) >= 2
    assert message.isprintable() or "\n" in message
    assert await read(tree, name) == data  # the text is kept
    with pytest.raises(errors.CanfarfsError) as failed:  # what printf > spec hides
        await read(tree, f"{name}.ids")
    assert errors.errno_for(failed.value) == errno.EINVAL
    assert await skaha.list() == []


async def test_error_texts_say_what_is_wrong(tree: SessionsTree) -> None:
    expect = {
        "unknown-field.yaml": "colour: unknown field",
        "wrong-type.yaml": "cores: Input should be a valid integer",
        "missing-image.yaml": "image: required field missing",
        "env-equals.yaml": "holds '='",
        "arg-space.yaml": "splits args on spaces",
        "huge.yaml": "at most 65536 bytes",
        "empty.yaml": "the spec is empty",
        "binary.yaml": "binary",
        "invalid-yaml.yaml": "invalid YAML at line",
        "invalid-json.json": "invalid JSON at line 1",
        "aliases.yaml": "aliases",
    }
    for name, words in expect.items():
        with pytest.raises(errors.InvalidArgument):
            await write(tree, name, BAD_SPECS[name])
        assert words in (await read(tree, f"{name}.error")).decode(), name


async def test_server_refusals_errnos_and_partial_failure(
    tree: SessionsTree,
    skaha: SkahaClient,
    emulator: Emulator,
) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        await write(tree, "cores.yaml", spec_text(cores=200))
    assert "Invalid value for 'cores': 200" in str(info.value)
    assert "the server refused it" in (await read(tree, "cores.yaml.error")).decode()
    with pytest.raises(errors.PermissionDenied):
        await write(tree, "private.yaml", spec_text(image=PRIVATE))
    assert "No authentication provided" in (await read(tree, "private.yaml.error")).decode()
    with pytest.raises(errors.QuotaExceeded) as quota:
        await write(
            tree, "many.yaml", spec_text(image=ASTROML, kind="notebook", cmd=None, replicas=6)
        )
    assert errors.errno_for(quota.value) == errno.EDQUOT
    assert len((await read(tree, "many.yaml.ids")).split()) == 5
    assert "1 of 6 replicas were not launched" in (await read(tree, "many.yaml.error")).decode()
    emulator.faults.plan = FaultPlan(
        fail_next=1, fail_status=503, methods=frozenset({"POST"}), path_prefix="/skaha/v1/session"
    )
    with pytest.raises(errors.Unavailable):
        await write(tree, "part.yaml", spec_text(name="part", replicas=3))
    ids = (await read(tree, "part.yaml.ids")).split()
    error = (await read(tree, "part.yaml.error")).decode()
    assert len(ids) == 2
    assert "1 of 3 replicas were not launched" in error
    assert "HTTP 503" in error
    for sid in ids:
        assert await exists(tree, sid.decode())


async def test_removing_a_spec_touches_no_session(tree: SessionsTree, skaha: SkahaClient) -> None:
    ids = await launch(tree, "keep.yaml", spec_text(name="keep", cmd="sleep", args="30"))
    with pytest.raises(errors.InvalidArgument):
        await write(tree, "bad.yaml", b"name: x\n")
    await tree.unlink("keep.yaml")
    await tree.unlink("bad.yaml")
    root = await names(tree)
    assert not {"keep.yaml", "keep.yaml.ids", "bad.yaml", "bad.yaml.error"} & set(root)
    assert [s.id for s in await skaha.list()] == ids
    assert await read(tree, f"{ids[0]}/spec") == spec_text(name="keep", cmd="sleep", args="30")
    await write(tree, "again.yaml", spec_text(name="again"))
    await tree.unlink("again.yaml.ids")  # clears just that outcome
    assert "again.yaml.ids" not in await names(tree)
    assert "again.yaml" in await names(tree)


async def test_shown_before_the_server_lists_it(skaha: SkahaClient) -> None:
    class Lagging(SkahaClient):
        """The emulator's answers, except that new sessions are listed late."""

        async def list_raw(
            self, kind: str | None = None, status: str | None = None
        ) -> list[dict[str, Any]]:
            return []

    lagging = Lagging(skaha.http, skaha.base)
    tree = SessionsTree(lagging, user=USER, list_ttl=0.1)
    [sid] = await launch(tree, "lag.yaml", spec_text(name="lag"))
    assert sid in await session_ids(tree)
    assert await names(tree, "by-name/lag") == [sid]
    assert await names(tree, "by-status/Pending") == [sid]
    assert (await read(tree, f"{sid}/info")).startswith(b"{")


# -- ending, bulk destroy, renewing ----------------------------------------------------------


async def test_rmdir_and_rm_r_destroy(tree: SessionsTree, skaha: SkahaClient) -> None:
    a = await elsewhere(skaha, cmd="sleep", args="30")
    b = await elsewhere(skaha, cmd="sleep", args="30")
    await until(lambda: _listed(tree, a, b))
    await tree.rmdir(a)
    assert a not in await session_ids(tree)
    for name in await names(tree, b):  # rm -r: the files first (accepted, no effect)...
        await tree.unlink(f"{b}/{name}")
    assert await exists(tree, f"{b}/info")
    await tree.rmdir(b)  # ...then the directory
    assert await skaha.list() == []
    assert await session_ids(tree) == []


async def _listed(tree: SessionsTree, *ids: str) -> bool:
    return set(ids) <= set(await session_ids(tree))


async def test_bulk_destroy_through_index_links(tree: SessionsTree, skaha: SkahaClient) -> None:
    done = await launch(tree, "t.yaml", spec_text(name="test", replicas=3))
    other = await launch(tree, "o.yaml", spec_text(name="other"))
    slow = await launch(tree, "s.yaml", spec_text(name="test-slow", cmd="sleep", args="30"))
    for sid in done + other:
        await wait_status(tree, sid, "Completed")
    # destroy_with("test-", "headless", "Completed"): links in by-name/test-*/ also in
    # by-kind/headless/ and by-status/Completed/ (what the documented find command does).
    headless = set(await names(tree, "by-kind/headless"))
    completed = set(await names(tree, "by-status/Completed"))
    for key in await names(tree, "by-name"):
        if key.startswith("test-"):
            for sid in await names(tree, f"by-name/{key}"):
                if sid in headless and sid in completed:
                    await tree.unlink(f"by-name/{key}/{sid}")
    left = {s.id for s in await skaha.list()}
    assert left == set(other + slow)
    with pytest.raises(errors.NotEmpty):
        await tree.rmdir("by-name/test-slow")
    await tree.unlink(f"by-status/Running/{slow[0]}")
    await tree.rmdir("by-name/test-slow")  # empty now: accepted
    with pytest.raises(errors.NotPermitted):
        await tree.rmdir("by-name")


async def test_touch_renews(tree: SessionsTree, emulator: Emulator, skaha: SkahaClient) -> None:
    sid = await elsewhere(skaha, name="nb", image=ASTROML, kind="notebook")
    await wait_status(tree, sid, "Running")
    before = json.loads(await read(tree, f"{sid}/info"))["expiryTime"]
    emulator.services[0].clock.offset = 3 * 86400
    await tree.touch(sid)
    assert json.loads(await read(tree, f"{sid}/info"))["expiryTime"] > before
    await tree.touch(f"by-kind/notebook/{sid}")  # (the kernel resolves links; harmless)
    done = await launch(tree, "d.yaml", spec_text(name="d"))
    await wait_status(tree, done[0], "Completed")
    with pytest.raises(errors.InvalidArgument):
        await tree.touch(done[0])  # not active: the server refuses


# -- secrets ---------------------------------------------------------------------------------


async def everything(tree: SessionsTree, path: str = "") -> list[tuple[str, bytes]]:
    """Every file of the tree with its content (links not followed)."""
    out = []
    for name, a in await tree.listdir(path):
        full = f"{path}/{name}" if path else name
        if a.is_dir:
            out += await everything(tree, full)
        elif not a.is_link:
            try:
                out.append((full, await read(tree, full)))
            except errors.CanfarfsError as exc:  # a failed launch's .ids: its error
                out.append((full, str(exc).encode()))
    return out


async def test_registry_secrets_never_show(
    skaha: SkahaClient,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tree = SessionsTree(skaha, user=USER, list_ttl=0.1, registry=("carol", "CONF-" + SECRET))
    text = (
        f"name: private-job\nimage: {PRIVATE}\ncmd: 'true'\n"
        f"registry:\n  username: bob\n  secret: {SECRET}\n"
    ).encode()
    [sid] = await launch(tree, "private.yaml", text)
    masked = text.replace(SECRET.encode(), b'"***"')
    assert await read(tree, "private.yaml") == masked
    assert await read(tree, f"{sid}/spec") == masked
    row = emulator.services[0].db.get(sid)
    assert row is not None
    assert row.registry_user == "bob"
    # Saved again as read back ("***"): the secret given earlier is reused.
    [again] = await launch(tree, "private.yaml", masked + b"# edited\n")
    assert again != sid
    # No registry: in the spec → the configured credentials.
    [conf] = await launch(
        tree, "conf.json", json.dumps({"name": "conf", "image": PRIVATE, "cmd": "true"}).encode()
    )
    row = emulator.services[0].db.get(conf)
    assert row is not None
    assert row.registry_user == "carol"
    with pytest.raises(errors.InvalidArgument):
        await write(
            tree,
            "bad.json",
            json.dumps(
                {
                    "name": "b",
                    "image": PRIVATE,
                    "extra": 1,
                    "registry": {"username": "bob", "secret": SECRET},
                }
            ).encode(),
        )
    assert b'"***"' in await read(tree, "bad.json")
    with pytest.raises(errors.InvalidArgument) as unknown:
        await write(tree, "who.yaml", masked.replace(b"bob", b"dave"))
    assert "no secret for username 'dave'" in str(unknown.value)
    for path, content in await everything(tree):
        assert SECRET.encode() not in content, path
    for record in caplog.records:
        assert SECRET not in record.getMessage()


# -- writes elsewhere, limits ------------------------------------------------------------------


async def test_writes_elsewhere_are_refused(tree: SessionsTree, skaha: SkahaClient) -> None:
    sid = await elsewhere(skaha, cmd="sleep", args="30")
    await until(lambda: _listed(tree, sid))
    refused = [
        tree.create("notes.txt", W),
        tree.create(f"{sid}/extra.yaml", W),
        tree.create("by-name/x.yaml", W),
        tree.create("images", W),
        tree.create("x.yaml.ids", W),
        tree.open(f"{sid}/info", os.O_WRONLY),
        tree.open(f"{sid}/status", os.O_RDONLY | os.O_TRUNC),
        tree.open("images", os.O_RDWR),
        tree.mkdir("newdir"),
        tree.mkdir(f"{sid}/d"),
        tree.unlink("images"),
        tree.rename(sid, "x.yaml"),
        tree.rename("images", "x.yaml"),
        tree.truncate(f"{sid}/logs", 0),
        tree.rmdir("by-kind"),
    ]
    for call in refused:
        with pytest.raises(errors.NotPermitted):
            await call
    await write(tree, "ok.yaml", spec_text(name="ok"))
    for bad_target in ("ok.txt", "images", sid, f"{sid}/x.yaml", "ok.yaml.ids"):
        with pytest.raises(errors.NotPermitted):
            await tree.rename("ok.yaml", bad_target)
    handle = await tree.open(f"{sid}/info", os.O_RDONLY)
    with pytest.raises(errors.NotPermitted):
        await handle.write(0, b"x")
    await handle.release()
    with pytest.raises(errors.IsADirectory):
        await tree.unlink(sid)
    assert errors.errno_for(errors.NotPermitted("x")) == errno.EPERM


async def test_size_limits(tree: SessionsTree) -> None:
    handle = await tree.create("big.yaml", W)
    await handle.write(0, b"#" * 1024 * 1024)
    with pytest.raises(FileTooLarge):
        await handle.write(1024 * 1024, b"x")
    await handle.release()
    assert (await tree.attr("big.yaml")).size == 1024 * 1024


async def test_workflow_with_arc_script(tree: SessionsTree, emulator: Emulator) -> None:
    """The seed's combined workflow, minus the storage mount: script in arc, launch,
    watch status to Completed, read logs, find the output, rmdir."""
    analysis = emulator.config.root / "arc" / "home" / USER / "analysis"
    (analysis / "output").mkdir(parents=True)
    (analysis / "input.txt").write_text("3 4\n")
    script = analysis / "process_data.sh"
    script.write_text(
        '#!/bin/sh\nd=$(dirname "$0")\nread a b < "$d/input.txt"\n'
        'echo "sum $((a+b))" | tee "$d/output/result.txt"\n'
    )
    script.chmod(0o755)
    [sid] = await launch(
        tree,
        "data-analysis.yaml",
        spec_text(name="data-analysis", cmd=str(script), cores=4, ram=16),
    )
    assert await wait_status(tree, sid, "Completed", "Failed") == "Completed"
    assert await read(tree, f"{sid}/logs") == b"sum 7\n"
    assert await trio.Path(analysis / "output" / "result.txt").read_text() == "sum 7\n"
    await tree.rmdir(sid)
    assert sid not in await session_ids(tree)


async def test_listing_does_not_wait_for_a_slow_platform_document(
    skaha: SkahaClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class SlowStats(SkahaClient):
        async def stats(self) -> Any:
            await trio.sleep(30)

    monkeypatch.setattr("canfarfs.sessions.tree.LISTING_WAIT", 0.2)
    tree = SessionsTree(SlowStats(skaha.http, skaha.base), user=USER)
    with trio.fail_after(3):
        entries = dict(await tree.listdir(""))
    assert entries["stats"].size == 0
    assert entries["images"].size == len(await read(tree, "images"))


async def test_odd_server_entries_are_skipped(skaha: SkahaClient) -> None:
    class Odd(SkahaClient):
        async def list_raw(
            self, kind: str | None = None, status: str | None = None
        ) -> list[dict[str, Any]]:
            return [
                {"id": "good1234", "type": "headless", "status": "Running", "name": "ok"},
                {"id": "../etc", "name": "bad"},
                {"id": "by-name"},
                {"id": 5},
                {},
                {"id": "desk1234", "appid": "abc", "type": "desktop-app"},
                {"id": "odd12345", "name": "a/b", "status": "<none>", "type": None},
            ]

    tree = SessionsTree(Odd(skaha.http, skaha.base), user=USER)
    assert await session_ids(tree) == ["good1234", "odd12345"]
    assert await names(tree, "by-name") == ["ok"]
    assert await names(tree, "by-status/Running") == ["good1234"]


async def test_bad_configured_registry_is_refused_without_echoing_it(skaha: SkahaClient) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        SessionsTree(skaha, user=USER, registry=("bob", "a:" + SECRET))
    assert SECRET not in str(info.value)
    assert "secret" in str(info.value)
