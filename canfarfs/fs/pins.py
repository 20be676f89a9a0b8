"""Pinned trees and the on-disk cache index: what a mount keeps across unmounts.

A *pin* names a file or a directory tree (a key ``(service, path)``); every file at or
below a pinned key is pinned, including files that appear there later. The read cache
(readcache.py) never evicts a pinned file's copy, and keeps it on disk at unmount.

The index is one JSON document, ``<cache-dir>/index.json``, written atomically (a
temporary file, fsync, rename) after each warm-up, eviction and at unmount::

    {
      "format": 1,
      "pins": [["arc", "home/alice/raw"], ...],
      "copies": [
        {"service": "arc", "path": "home/alice/raw/a.fits", "file": "<name in data/>",
         "md5": "...", "length": 1234, "date": "2025-01-01T00:00:00.000"}, ...
      ],
      "nodes": [{"service": "arc", "path": "home/alice/raw", "node": {<Node>}}, ...],
      "listings": [{"service": "arc", "path": "home/alice/raw", "names": ["a.fits", ...]}]
    }

* ``copies``: complete cached copies of pinned files, one per file, with the version
  they hold (MD5, length, date: the node's, as listed when it was fetched). A copy is
  served again after a remount only while the server's node has that same version.
* ``nodes`` and ``listings``: the metadata of pinned trees (each pinned key's node and
  those of the directories above it, the directories below it with their children's
  names, every child's node), as last listed. :meth:`PinIndex.seed` puts them into a
  :class:`~canfarfs.fs.meta.MetaCache` as expired entries, which the storage core
  serves only while a service cannot be reached; an offline mount can build on
  :attr:`PinIndex.nodes` and :attr:`PinIndex.listings` directly.

A missing index is an empty one; an unreadable one is logged and ignored (its copies
are then removed as any unindexed cache file is).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canfarfs.fs.meta import Key, Listing, MetaCache, child_key, move_keys, parent_key
from canfarfs.vospace import props
from canfarfs.vospace.model import Node, NodeType

log = logging.getLogger(__name__)

FORMAT = 1
INDEX_NAME = "index.json"


def version_of(node: Node) -> str:
    """The version a cached copy stands for: the node's MD5 and length, or, without an
    MD5, its length and date. The date is left out where the MD5 says it all: the
    mount's own record of a file it uploaded dates it to the second, the server's to
    the millisecond, and the same bytes must not count as another version."""
    return _version(node.prop(props.MD5), node.length, node.prop(props.DATE))


def _version(md5: str | None, length: int, date: str | None) -> str:
    return f"{md5}:{length}:" if md5 else f"None:{length}:{date}"


def under(key: Key, root: Key) -> bool:
    """Whether ``key`` is ``root`` or below it."""
    return key[0] == root[0] and (
        not root[1] or key[1] == root[1] or key[1].startswith(root[1] + "/")
    )


@dataclass
class StoredCopy:
    """A complete cached copy on disk, not open: ``file`` in the cache's data directory."""

    key: Key
    file: str
    md5: str | None
    length: int
    date: str | None
    #: Known to be on stable storage (fsynced before an index listed it).
    synced: bool = False
    #: When it was last used (time.monotonic), for eviction.
    last_used: float = 0.0

    @property
    def version(self) -> str:
        return _version(self.md5, self.length, self.date)

    @classmethod
    def of(cls, key: Key, file: str, version: str) -> StoredCopy:
        md5, length, date = version.split(":", 2)
        return cls(
            key,
            file,
            None if md5 == "None" else md5,
            int(length),
            None if date in ("None", "") else date,
        )


class PinIndex:
    """The pinned keys, the kept copies and the pinned trees' metadata."""

    def __init__(self) -> None:
        self.roots: set[Key] = set()
        #: Kept copies by key (those of pinned files; see ReadCache.stored).
        self.copies: dict[Key, StoredCopy] = {}
        #: Nodes of pinned trees by key: each pinned key and everything listed below it.
        self.nodes: dict[Key, Node] = {}
        #: Directories of pinned trees: their children's names (the nodes are in nodes).
        self.listings: dict[Key, list[str]] = {}

    # -- pins --------------------------------------------------------------------------

    def pinned(self, key: Key) -> bool:
        """Whether ``key`` is a pinned key or lies below one."""
        if not self.roots:
            return False
        service, path = key
        while True:
            if (service, path) in self.roots:
                return True
            if not path:
                return False
            path = path.rpartition("/")[0]

    def pin(self, key: Key) -> None:
        self.roots.add(key)

    def unpin(self, key: Key) -> list[Key]:
        """Unpin ``key`` and every pin below it; returns the pins removed. Metadata
        recorded for them goes too, unless an outer pin still covers it."""
        gone = [r for r in self.roots if under(r, key)]
        self.roots.difference_update(gone)
        for table in (self.nodes, self.listings):
            for k in [k for k in table if not (self.pinned(k) or self._above_a_pin(k))]:
                del table[k]
        return gone

    def rekey(self, moved: Callable[[Key], Key | None]) -> None:
        """Names moved (a rename): pins, kept copies and recorded metadata follow, so a
        pinned tree renamed here is pinned under its new name (also after a restart)."""
        self.roots = {moved(r) or r for r in self.roots}
        move_keys(self.copies, moved)
        move_keys(self.nodes, moved)
        move_keys(self.listings, moved)

    def _above_a_pin(self, key: Key) -> bool:
        return any(under(r, key) for r in self.roots)

    # -- metadata of pinned trees --------------------------------------------------------

    def record(self, key: Key, node: Node) -> None:
        self.nodes[key] = node

    def record_listing(self, key: Key, children: dict[str, Node]) -> None:
        self.listings[key] = sorted(children)
        for name, node in children.items():
            self.nodes[child_key(key, name)] = node

    def refresh_from(self, meta: MetaCache) -> None:
        """Take the newest listings the metadata cache holds for recorded directories
        (the mount's own changes and later listings), and nodes it holds."""
        for key in list(self.listings):
            listing = meta.stale_listing(key)
            if listing is not None:
                for name in self.listings[key]:
                    if name not in listing.children:
                        self.nodes.pop(child_key(key, name), None)
                self.record_listing(key, dict(listing.children))
        for key in list(self.nodes):
            hit = meta.nodes.get(key)
            if hit is not None and hit[0] is not None:
                self.nodes[key] = hit[0]

    def seed(self, meta: MetaCache) -> None:
        """Put the recorded metadata into ``meta`` as expired entries: served only while
        a service cannot be reached (Storage.is_down), replaced by any fresh answer."""
        expired = float("-inf")
        for key, names in self.listings.items():
            if key not in meta.listings:
                children = {
                    n: self.nodes[child_key(key, n)]
                    for n in names
                    if child_key(key, n) in self.nodes
                }
                meta.listings[key] = Listing(children, expired)
        for key, node in self.nodes.items():  # pinned keys and the directories above
            if key not in meta.nodes and (not key[1] or parent_key(key) not in self.listings):
                meta.remembered.setdefault(key, node)  # never swept (meta.py)

    def files(self) -> Iterable[tuple[Key, Node]]:
        """The data files recorded under pinned keys."""
        return ((k, n) for k, n in self.nodes.items() if n.type is NodeType.DATA and self.pinned(k))

    # -- on disk -----------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, data_dir: Path) -> PinIndex:
        """The index at ``path``; copies whose file in ``data_dir`` is missing or of the
        wrong size are left out. A missing or unreadable index is an empty one."""
        index = cls()
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return index
        except (OSError, ValueError) as exc:
            log.warning("cache index %s unreadable, starting without it: %s", path, exc)
            return index
        try:
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, not {FORMAT}")
            index.roots = {(str(s), str(p)) for s, p in doc.get("pins", [])}
            for c in doc.get("copies", []):
                key = (str(c["service"]), str(c["path"]))
                copy = StoredCopy(
                    key, str(c["file"]), c.get("md5"), int(c["length"]), c.get("date"), True
                )
                if "/" in copy.file or copy.file.startswith("."):
                    continue
                try:
                    size = (data_dir / copy.file).stat().st_size
                except OSError:
                    continue
                if size == copy.length:
                    index.copies[key] = copy
            for n in doc.get("nodes", []):
                index.nodes[(str(n["service"]), str(n["path"]))] = Node.model_validate(n["node"])
            for entry in doc.get("listings", []):
                index.listings[(str(entry["service"]), str(entry["path"]))] = [
                    str(x) for x in entry["names"]
                ]
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("cache index %s malformed, starting without it: %s", path, exc)
            return cls()
        return index

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "pins": sorted([s, p] for s, p in self.roots),
            "copies": [
                {
                    "service": c.key[0],
                    "path": c.key[1],
                    "file": c.file,
                    "md5": c.md5,
                    "length": c.length,
                    "date": c.date,
                }
                for c in sorted(self.copies.values(), key=lambda c: c.key)
            ],
            "nodes": [
                {
                    "service": k[0],
                    "path": k[1],
                    "node": n.model_dump(mode="json", exclude={"children"}),
                }
                for k, n in sorted(self.nodes.items())
            ],
            "listings": [
                {"service": k[0], "path": k[1], "names": names}
                for k, names in sorted(self.listings.items())
            ],
        }

    def encode(self) -> tuple[bytes, list[StoredCopy]]:
        """The index as bytes, and the copies it lists not yet known to be synced (for
        :func:`write_index`; on the event loop, as the tables change there)."""
        data = json.dumps(self.document(), separators=(",", ":")).encode()
        return data, [c for c in self.copies.values() if not c.synced]

    def save(self, path: Path, data_dir: Path) -> None:
        """Encode and write at once (blocking: at unmount, or in a worker thread when
        nothing else changes the index)."""
        write_index(path, data_dir, *self.encode())


def write_index(path: Path, data_dir: Path, data: bytes, unsynced: list[StoredCopy]) -> None:
    """Write an encoded index atomically, after fsyncing the copies it lists that may
    not be on stable storage yet (blocking: run it in a worker thread)."""
    for copy in unsynced:
        try:
            fd = os.open(data_dir / copy.file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            copy.synced = True
        except OSError as exc:
            log.warning("cached copy %s not synced: %s", copy.file, exc)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
