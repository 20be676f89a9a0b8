"""Inode numbers for remote paths, with lookup counts done the pyfuse3 way.

Numbers are monotonic and never reused within a mount; an entry lives while the kernel
holds lookups on it or a handle is open; renames re-key whole subtrees.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from canfarfs import errors

ROOT = 1


@dataclass
class Inode:
    ino: int
    key: Hashable
    lookups: int = 0
    opens: int = 0


class InodeTable:
    def __init__(self, first_free: int = 16) -> None:
        self._next = first_free
        self.by_ino: dict[int, Inode] = {}
        self.by_key: dict[Hashable, Inode] = {}

    def fixed(self, ino: int, key: Hashable) -> Inode:
        """Register a permanent inode (root, top-level directories)."""
        entry = Inode(ino, key, lookups=1 << 40)
        self.by_ino[ino] = entry
        self.by_key[key] = entry
        return entry

    def ino_for(self, key: Hashable) -> int:
        """The inode of ``key``, allocating a new number if it has none."""
        entry = self.by_key.get(key)
        if entry is None:
            entry = Inode(self._next, key)
            self._next += 1
            self.by_ino[entry.ino] = entry
            self.by_key[key] = entry
        return entry.ino

    def looked_up(self, key: Hashable) -> int:
        """``key`` was handed to the kernel (lookup, create, readdirplus): count it."""
        ino = self.ino_for(key)
        self.by_ino[ino].lookups += 1
        return ino

    def count_lookup(self, ino: int, key: Hashable) -> None:
        """The kernel now holds ``ino`` (from readdirplus); re-register it if it was
        dropped since the listing was snapshotted."""
        entry = self.by_ino.get(ino)
        if entry is None:
            entry = Inode(ino, key)
            self.by_ino[ino] = entry
            self.by_key.setdefault(key, entry)
        entry.lookups += 1

    def key(self, ino: int) -> Hashable:
        entry = self.by_ino.get(ino)
        if entry is None:
            raise errors.StaleInode(f"inode {ino} is not known")
        return entry.key

    def forget(self, ino: int, n: int) -> None:
        entry = self.by_ino.get(ino)
        if entry is None:
            return
        entry.lookups -= n
        self._maybe_drop(entry)

    def opened(self, ino: int) -> None:
        self.by_ino[ino].opens += 1

    def closed(self, ino: int) -> None:
        entry = self.by_ino.get(ino)
        if entry is not None:
            entry.opens -= 1
            self._maybe_drop(entry)

    def _maybe_drop(self, entry: Inode) -> None:
        if entry.lookups <= 0 and entry.opens <= 0:
            self.by_ino.pop(entry.ino, None)
            if self.by_key.get(entry.key) is entry:
                del self.by_key[entry.key]

    def rekey(self, old: tuple[str, str], new: tuple[str, str]) -> None:
        """A rename: move ``old`` and every key below it to ``new``."""
        service, path = old
        prefix = path + "/"
        moved = [
            e
            for k, e in list(self.by_key.items())
            if isinstance(k, tuple)
            and len(k) == 2
            and k[0] == service
            and (k[1] == path or str(k[1]).startswith(prefix))
        ]
        for entry in moved:
            del self.by_key[entry.key]
        for entry in moved:
            assert isinstance(entry.key, tuple)
            suffix = str(entry.key[1])[len(path) :]
            entry.key = (new[0], new[1] + suffix)
            displaced = self.by_key.get(entry.key)
            if displaced is not None:
                displaced.key = ("<replaced>", str(displaced.ino))
                self.by_key[displaced.key] = displaced
            self.by_key[entry.key] = entry

    def detach(self, key: Hashable) -> None:
        """``key`` was deleted: keep the inode for open handles, but unreachable by key."""
        entry = self.by_key.pop(key, None)
        if entry is not None:
            entry.key = ("<deleted>", str(entry.ino))
            self.by_key[entry.key] = entry
