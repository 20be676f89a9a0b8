"""The read cache: one cached copy per file version, under the disk and memory budgets.

A copy (:class:`RemoteFile` over a :class:`CacheFile`) is keyed by the file's name and
stands for one version of it (MD5, length, date). Open files take a copy with
:meth:`ReadCache.copy_of`; a copy that leaves the index (a newer version, eviction, the
name gone) lives on until its last user lets go. The least recently used unused copies
are evicted beyond ``cache_size`` bytes on disk or ``MAX_CACHED_FILES`` files.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from canfarfs.fs.cachefile import CacheFile
from canfarfs.fs.membudget import MemoryBudget
from canfarfs.fs.meta import Key
from canfarfs.fs.remote_file import ReadTotals, RemoteFile
from canfarfs.vospace.client import VOSpaceClient

#: Cached remote files kept at once: each holds an open descriptor (the soft limit is
#: raised at start-up, see daemon.raise_open_file_limit, but stays finite).
MAX_CACHED_FILES = 512


@dataclass
class CachedBytes:
    """A cached copy of one version of a remote file (``remote.version``)."""

    remote: RemoteFile
    last_used: float = field(default_factory=time.monotonic)


class ReadCache:
    """Cached copies by name, within the disk budget and one memory budget."""

    def __init__(
        self,
        data_dir: Path,
        *,
        cache_size: int,
        memory: int,
        read_timeout: float,
        nursery: trio.Nursery,
    ) -> None:
        self.data_dir = data_dir
        self.cache_size = cache_size
        self.read_timeout = read_timeout
        self.nursery = nursery
        self.memory = MemoryBudget(memory)
        self.totals = ReadTotals()
        self.copies: dict[Key, CachedBytes] = {}

    def copy_of(self, key: Key, version: str, size: int, client: VOSpaceClient) -> RemoteFile:
        """The cached copy of ``key`` at ``version`` (made, and the cache evicted, if it
        has none); the caller takes its own use of it."""
        cached = self.copies.get(key)
        if cached is None or cached.remote.version != version:
            self.drop(key)
            name = hashlib.sha256(f"{key}:{version}".encode()).hexdigest()[:32]
            # A file bigger than the whole cache is streamed through memory only.
            cache = CacheFile(
                self.data_dir / name,
                size,
                budget=self.memory,
                nursery=self.nursery,
                write_to_disk=size <= self.cache_size,
            )
            remote = RemoteFile(
                client,
                key[1],
                cache,
                self.nursery,
                read_timeout=self.read_timeout,
                version=version,
                totals=self.totals,
            )
            cached = CachedBytes(remote)
            self.copies[key] = cached
            self._evict()
        cached.last_used = time.monotonic()
        return cached.remote

    def drop(self, key: Key) -> None:
        """Take ``key``'s copy out of the cache (its users keep it until they close)."""
        cached = self.copies.pop(key, None)
        if cached is not None:
            cached.remote.retire()

    def rekey(self, moved: Callable[[Key], Key | None]) -> None:
        """Names moved (a rename): their copies follow, fetching from the new path."""
        for key in [k for k in self.copies if moved(k)]:
            cached = self.copies.pop(key)
            new = moved(key)
            assert new is not None
            cached.remote.rename(new[1])
            self.drop(new)
            self.copies[new] = cached

    def used(self) -> int:
        """Bytes the read cache holds on disk."""
        return sum(c.remote.cache.on_disk.total for c in self.copies.values())

    def _evict(self) -> None:
        """Keep the cache under ``cache_size`` bytes and MAX_CACHED_FILES files (each
        holds an open descriptor), dropping the least recently used unused copies."""
        total = self.used()
        count = len(self.copies)
        if total <= self.cache_size and count <= MAX_CACHED_FILES:
            return
        for key, c in sorted(self.copies.items(), key=lambda kv: kv[1].last_used):
            if total <= self.cache_size and count <= MAX_CACHED_FILES:
                break
            if c.remote.users == 0:
                total -= c.remote.cache.on_disk.total
                count -= 1
                self.drop(key)

    def close(self) -> None:
        """At unmount: every copy goes (copies are never reused across runs)."""
        for cached in self.copies.values():
            cached.remote.retire()
        self.copies.clear()
