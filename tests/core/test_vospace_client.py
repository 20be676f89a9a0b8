"""The VOSpace client as a library (no FUSE), against the emulator in-process."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from canfarfs import errors
from canfarfs.emulator.app import Emulator
from canfarfs.vospace.model import NodeType
from tests.vospace_util import client_for


async def test_vault_listing_pages_without_repeats(emulator: Emulator) -> None:
    c = client_for(emulator, "vault", page_size=5)
    await c.create_node("alice/many", NodeType.CONTAINER)
    for i in range(23):
        await c.create_node(f"alice/many/f{i:02d}", NodeType.DATA)
    pages = [page async for _, page in c.list_dir("alice/many")]
    names = [n.name for page in pages for n in page]
    assert len(pages) >= 5
    assert names == [f"f{i:02d}" for i in range(23)]


async def test_arc_listing_is_one_document(emulator: Emulator) -> None:
    c = client_for(emulator, "arc", page_size=5)
    await c.create_node("home/alice/d", NodeType.CONTAINER)
    for i in range(12):
        await c.create_node(f"home/alice/d/f{i}", NodeType.DATA)
    pages = [page async for _, page in c.list_dir("home/alice/d")]
    assert len(pages) == 1
    assert len(pages[0]) == 12


@pytest.mark.parametrize(("service", "home"), [("arc", "home/alice"), ("vault", "alice")])
async def test_upload_is_verified_and_readable(
    emulator: Emulator, tmp_path: Path, service: str, home: str
) -> None:
    c = client_for(emulator, service)
    data = b"payload " * 1000
    src = tmp_path / "src"
    src.write_bytes(data)
    await c.upload(f"{home}/p.bin", src, len(data), hashlib.md5(data).hexdigest())  # noqa: S324
    node = await c.get_node(f"{home}/p.bin")
    assert node.length == len(data)
    loc = await c.locate(f"{home}/p.bin", len(data))
    assert loc is not None
    async with c.open_bytes(loc) as r:
        assert await r.aread() == data


async def test_a_wrong_md5_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    c = client_for(emulator, "arc")
    src = tmp_path / "src"
    src.write_bytes(b"abc")
    with pytest.raises(errors.IntegrityError):
        await c.upload("home/alice/bad.bin", src, 3, "0" * 32)


async def test_moves_and_their_errors(emulator: Emulator) -> None:
    c = client_for(emulator, "vault")
    await c.create_node("alice/a", NodeType.DATA)
    await c.create_node("alice/b", NodeType.DATA)
    await c.move("alice/a", "alice/c")
    assert (await c.get_node("alice/c")).type is NodeType.DATA
    with pytest.raises(errors.AlreadyExists):
        await c.move("alice/b", "alice/c")
    with pytest.raises(errors.NotFound):
        await c.move("alice/ghost", "alice/x")


async def test_errors_map_to_the_vocabulary(emulator: Emulator) -> None:
    c = client_for(emulator, "arc")
    with pytest.raises(errors.NotFound):
        await c.get_node("home/alice/nothing")
    await c.create_node("home/alice/full", NodeType.CONTAINER)
    await c.create_node("home/alice/full/x", NodeType.DATA)
    with pytest.raises(errors.NotEmpty):
        await c.delete_node("home/alice/full")
    with pytest.raises(errors.AlreadyExists):
        await c.create_node("home/alice/full", NodeType.CONTAINER)


async def test_503s_are_retried_and_timeouts_bounded(emulator: Emulator) -> None:
    c = client_for(emulator, "arc")
    emulator.faults.plan.fail_next = 2
    assert (await c.get_node("home/alice")).type is NodeType.CONTAINER
    emulator.faults.plan.latency = 5.0
    c.http.timeouts.operation = 0.3
    with pytest.raises(errors.Timeout):
        await c.get_node("home/alice")
