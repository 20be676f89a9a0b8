"""The staging journal (docs/semantics.md, *Writing and durability*): each staged file's
entry says where its bytes belong, is found by the next mount, and goes once the bytes
are on the server — in an extended attribute, or a JSON file beside the bytes where the
cache's file system keeps none (and where an earlier canfarfs kept it)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from canfarfs.fs import staging
from canfarfs.fs.staging import Stage, pending_entries, read_journal


def staged(directory: Path, path: str = "home/alice/a.txt") -> Stage:
    stage = Stage(directory, "arc", path, new=True, dirty=True)
    os.pwrite(stage.fd, b"bytes", 0)
    stage.size = 5
    stage.journal()
    return stage


def test_the_entry_is_an_extended_attribute_found_by_the_next_mount(tmp_path: Path) -> None:
    stage = staged(tmp_path)
    stage.dispose()  # the daemon goes; the bytes are still to upload
    assert [p.name for p in tmp_path.iterdir()] == [f"{stage.id}.data"]
    [(data, entry)] = pending_entries(tmp_path)
    assert data == stage.data_path
    assert (entry["service"], entry["path"], entry["new"], entry["dirty"]) == (
        "arc",
        "home/alice/a.txt",
        True,
        True,
    )


def test_an_uploaded_file_leaves_no_entry(tmp_path: Path) -> None:
    stage = staged(tmp_path)
    stage.uploaded()
    assert read_journal(stage.data_path) is None
    assert pending_entries(tmp_path) == []


def test_without_extended_attributes_the_entry_is_a_json_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache on a file system that keeps no user xattrs (some network file systems):
    setxattr fails with ENOTSUP, and the entry is ``<id>.json`` beside the bytes."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", refuse)
    stage = staged(tmp_path, "home/alice/b.txt")
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".data", ".json"]
    [(_, entry)] = pending_entries(tmp_path)
    assert entry["path"] == "home/alice/b.txt"
    stage.uploaded()
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".data"]
    assert pending_entries(tmp_path) == []
    staging._without_xattrs.discard(tmp_path)


def test_an_entry_an_earlier_version_wrote_beside_the_bytes_is_found(tmp_path: Path) -> None:
    data = tmp_path / ("2" * 32 + ".data")
    data.write_bytes(b"pending bytes")
    entry = {"service": "vault", "path": "alice/c.fits", "dirty": True, "new": False}
    data.with_suffix(".json").write_text(json.dumps(entry))
    assert pending_entries(tmp_path) == [(data, entry)]


def test_an_unreadable_entry_is_no_entry(tmp_path: Path) -> None:
    data = tmp_path / ("3" * 32 + ".data")
    data.write_bytes(b"x")
    os.setxattr(data, staging.JOURNAL_XATTR, b"{torn")
    assert read_journal(data) is None
    assert pending_entries(tmp_path) == []
