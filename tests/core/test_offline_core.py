"""What an offline start knows (docs/semantics.md, *Offline*): the listings and nodes a
mount saved at unmount come back expired (served only while a service is down), and
survive the metadata cache's sweeps; a forgotten or deleted name is not brought back."""

from __future__ import annotations

from pathlib import Path

import pytest

from canfarfs.fs.meta import SWEEP_EVERY, MetaCache
from canfarfs.fs.offline import load_metadata, save_metadata
from canfarfs.vospace.model import Node, NodeType

pytestmark = pytest.mark.semantics("Offline")


def node(path: str, kind: NodeType = NodeType.DATA) -> Node:
    return Node(uri=f"vos://cadc.nrc.ca~arc/{path}", type=kind, properties={})


async def test_saved_metadata_comes_back_expired_and_outlives_sweeps(tmp_path: Path) -> None:
    before = MetaCache(ttl=5.0)
    before.put(("arc", "home"), node("home", NodeType.CONTAINER))
    before.put_listing(("arc", "home/a"), {"x.fits": node("home/a/x.fits")})
    assert save_metadata(before, tmp_path) == 2  # one listing: itself and one child
    after = MetaCache(ttl=5.0, keep_stale=0.0)
    assert load_metadata(after, tmp_path) >= 2
    assert after.node(("arc", "home")) == (False, None)  # never fresh: asked again online
    assert after.listing(("arc", "home/a")) is None
    for i in range(SWEEP_EVERY + 1):  # sweeps that drop every stale node entry
        after.put(("arc", f"tmp/{i}"), None)
    stale_home = after.stale_node(("arc", "home"))
    assert stale_home is not None
    assert stale_home.type is NodeType.CONTAINER
    listing = after.stale_listing(("arc", "home/a"))
    assert listing is not None
    assert list(listing.children) == ["x.fits"]


async def test_a_deleted_or_forgotten_name_is_not_brought_back(tmp_path: Path) -> None:
    before = MetaCache()
    before.put(("arc", "home/gone"), node("home/gone"))
    before.put(("arc", "home/moved"), node("home/moved"))
    save_metadata(before, tmp_path)
    after = MetaCache()
    load_metadata(after, tmp_path)
    after.put(("arc", "home/gone"), None)
    after.forget(("arc", "home/moved"))
    assert after.stale_node(("arc", "home/gone")) is None
    assert after.stale_node(("arc", "home/moved")) is None


async def test_an_unreadable_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").write_text("{not json")
    assert load_metadata(MetaCache(), tmp_path) == 0
