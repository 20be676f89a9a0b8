"""The read cache: one cached copy per file version, under the disk and memory budgets.

A copy (:class:`RemoteFile` over a :class:`CacheFile`) is keyed by the file's name and
stands for one version of it (MD5, length, date). Open files take a copy with
:meth:`ReadCache.copy_of`; a copy that leaves the index (a newer version, eviction, the
name gone) lives on until its last user lets go. The least recently used unused copies
are evicted beyond ``cache_size`` bytes on disk; beyond ``MAX_CACHED_FILES`` open
copies, unused complete ones are *stored* (their descriptor closed, the file kept, see
:class:`~canfarfs.fs.pins.StoredCopy`) and opened again when asked for.

Pinned files (pins.py) are never evicted; their complete copies are kept at unmount and
listed in the on-disk index, so the next mount serves them while the server's version
is unchanged. Other copies are not reused across runs.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, ItemsView, Iterator, ValuesView
from dataclasses import dataclass, field
from pathlib import Path

import trio

from canfarfs.fs.cachefile import CacheFile
from canfarfs.fs.membudget import MemoryBudget
from canfarfs.fs.meta import Key, MetaCache
from canfarfs.fs.pins import INDEX_NAME, PinIndex, StoredCopy, under, write_index
from canfarfs.fs.remote_file import ReadTotals, RemoteFile
from canfarfs.vospace.client import VOSpaceClient

log = logging.getLogger(__name__)

#: Cached remote files kept at once: each holds an open descriptor (the soft limit is
#: raised at start-up, see daemon.raise_open_file_limit, but stays finite).
MAX_CACHED_FILES = 512


class StoredCopies:
    """The stored copies by name, with their bytes summed as they come and go: a
    warm-up of thousands of files asked for the sum at every file (quadratic)."""

    def __init__(self, copies: dict[Key, StoredCopy] | None = None) -> None:
        self._copies: dict[Key, StoredCopy] = {}
        self.total = 0
        for key, copy in (copies or {}).items():
            self[key] = copy

    def __setitem__(self, key: Key, copy: StoredCopy) -> None:
        self.take(key)
        self._copies[key] = copy
        self.total += copy.length

    def __delitem__(self, key: Key) -> None:
        if self.take(key) is None:
            raise KeyError(key)

    def take(self, key: Key) -> StoredCopy | None:
        """Remove and return ``key``'s copy (None if there is none)."""
        copy = self._copies.pop(key, None)
        if copy is not None:
            self.total -= copy.length
        return copy

    def __getitem__(self, key: Key) -> StoredCopy:
        return self._copies[key]

    def __contains__(self, key: object) -> bool:
        return key in self._copies

    def __iter__(self) -> Iterator[Key]:
        return iter(self._copies)

    def __len__(self) -> int:
        return len(self._copies)

    def get(self, key: Key) -> StoredCopy | None:
        return self._copies.get(key)

    def items(self) -> ItemsView[Key, StoredCopy]:
        return self._copies.items()

    def values(self) -> ValuesView[StoredCopy]:
        return self._copies.values()


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
        index: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.cache_size = cache_size
        self.read_timeout = read_timeout
        self.nursery = nursery
        self.memory = MemoryBudget(memory)
        self.totals = ReadTotals()
        self.copies: dict[Key, CachedBytes] = {}
        #: The on-disk index (``index``: loaded from, and saved to, beside data_dir).
        self.index_path = data_dir.parent / INDEX_NAME if index else None
        self.pins = (
            PinIndex.load(self.index_path, data_dir) if self.index_path is not None else PinIndex()
        )
        #: Complete copies on disk without an open descriptor, by name.
        self.stored = StoredCopies(
            {k: c for k, c in self.pins.copies.items() if self.pins.pinned(k)}
        )
        self._saving = trio.Lock()

    def copy_of(self, key: Key, version: str, size: int, client: VOSpaceClient) -> RemoteFile:
        """The cached copy of ``key`` at ``version`` (made, and the cache evicted, if it
        has none); the caller takes its own use of it."""
        cached = self.copies.get(key)
        if cached is None or cached.remote.version != version:
            stored = self.stored.get(key)
            name = self.file_name(key, version)
            present = stored is not None and stored.version == version and stored.length == size
            if present and stored is not None:
                del self.stored[key]  # opened again: the copy below takes its file
                name = stored.file
            self.drop(key)
            # A file bigger than the whole cache is streamed through memory only.
            cache = CacheFile(
                self.data_dir / name,
                size,
                budget=self.memory,
                nursery=self.nursery,
                write_to_disk=size <= self.cache_size,
                present=present,
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

    @staticmethod
    def file_name(key: Key, version: str) -> str:
        """The name of ``key``'s copy at ``version`` in the data directory."""
        return hashlib.sha256(f"{key}:{version}".encode()).hexdigest()[:32]

    def drop(self, key: Key) -> None:
        """Take ``key``'s copy out of the cache (its users keep it until they close)."""
        cached = self.copies.pop(key, None)
        if cached is not None:
            cached.remote.retire()
        stored = self.stored.take(key)
        if stored is not None:
            (self.data_dir / stored.file).unlink(missing_ok=True)

    def rekey(self, moved: Callable[[Key], Key | None]) -> None:
        """Names moved (a rename): their copies and pins follow, fetching from the new
        path."""
        self.pins.rekey(moved)
        for key in [k for k in self.copies if moved(k)]:
            cached = self.copies.pop(key)
            new = moved(key)
            assert new is not None
            cached.remote.rename(new[1])
            self.drop(new)
            self.copies[new] = cached
        for key in [k for k in self.stored if moved(k)]:
            stored = self.stored[key]
            del self.stored[key]
            new = moved(key)
            assert new is not None
            self.drop(new)
            stored.key = new
            self.stored[new] = stored

    def complete(self, key: Key, version: str) -> bool:
        """Whether all of ``key`` at ``version`` is cached on disk."""
        cached = self.copies.get(key)
        if cached is not None and cached.remote.version == version:
            cache = cached.remote.cache
            return cache.write_to_disk and cache.on_disk.covers(0, cache.size)
        stored = self.stored.get(key)
        return stored is not None and stored.version == version

    def used(self) -> int:
        """Bytes the read cache holds on disk."""
        return sum(c.remote.cache.on_disk.total for c in self.copies.values()) + self.stored.total

    def pinned_usage(self) -> tuple[int, int]:
        """(files, bytes) of pinned files cached on disk."""
        files = size = 0
        for key, c in self.copies.items():
            if self.pins.pinned(key) and c.remote.cache.on_disk.total:
                files += 1
                size += c.remote.cache.on_disk.total
        for key, s in self.stored.items():
            if self.pins.pinned(key):
                files += 1
                size += s.length
        return files, size

    def _store(self, key: Key, cached: CachedBytes) -> bool:
        """Close the descriptor of an unused complete copy and keep its file (stored)."""
        remote = cached.remote
        cache = remote.cache
        if remote.users > 0 or cache.dropped or not cache.write_to_disk:
            return False
        if not cache.on_disk.covers(0, cache.size):
            return False
        del self.copies[key]
        remote.retired = True  # out of the index; its file now belongs to self.stored
        cache.close()
        stored = StoredCopy.of(key, cache.path.name, remote.version)
        stored.last_used = cached.last_used
        self.stored[key] = stored
        return True

    def _evict(self) -> None:
        """Keep the cache under ``cache_size`` bytes, dropping the least recently used
        unused copies that are not pinned; and under MAX_CACHED_FILES open copies (each
        holds a descriptor), storing complete ones (dropping the rest)."""
        count = len(self.copies)
        if count > MAX_CACHED_FILES:
            for key, c in sorted(self.copies.items(), key=lambda kv: kv[1].last_used):
                if count <= MAX_CACHED_FILES:
                    break
                if self._store(key, c):
                    count -= 1
                elif c.remote.users == 0 and not self.pins.pinned(key):
                    self.drop(key)
                    count -= 1
        total = self.used()
        if total <= self.cache_size:
            return
        candidates: list[tuple[float, Key, int]] = [
            (c.last_used, k, c.remote.cache.on_disk.total)
            for k, c in self.copies.items()
            if c.remote.users == 0
        ]
        candidates += [(s.last_used, k, s.length) for k, s in self.stored.items()]
        for _, key, size in sorted(candidates):
            if total <= self.cache_size:
                break
            if not self.pins.pinned(key):
                total -= size
                self.drop(key)

    def evict(self, root: Key) -> tuple[int, int]:
        """Drop the copies at or below ``root`` (open ones once closed); (files, bytes)."""
        files = size = 0
        for key in [k for k in self.copies if under(k, root)]:
            files += 1
            size += self.copies[key].remote.cache.on_disk.total
            self.drop(key)
        for key in [k for k in self.stored if under(k, root)]:
            files += 1
            size += self.stored[key].length
            self.drop(key)
        return files, size

    # -- the on-disk index ---------------------------------------------------------------

    def kept_files(self) -> set[str]:
        """Names in the data directory that the index lists (kept at start-up)."""
        return {s.file for s in self.stored.values()}

    def _index_copies(self) -> None:
        """The index's copies: every complete pinned copy, open or stored."""
        copies: dict[Key, StoredCopy] = {}
        for key, c in self.copies.items():
            cache = c.remote.cache
            if (
                self.pins.pinned(key)
                and cache.write_to_disk
                and cache.on_disk.covers(0, cache.size)
            ):
                old = self.pins.copies.get(key)
                copy = StoredCopy.of(key, cache.path.name, c.remote.version)
                copy.synced = old is not None and old.file == copy.file and old.synced
                copies[key] = copy
        for key, s in self.stored.items():
            if self.pins.pinned(key):
                copies[key] = s
        self.pins.copies = copies

    async def save_index(self, meta: MetaCache | None = None) -> None:
        """Write the index (pins, kept copies, pinned trees' metadata) to disk."""
        if self.index_path is None:
            return
        async with self._saving:
            self._index_copies()
            if meta is not None:
                self.pins.refresh_from(meta)
            data, unsynced = self.pins.encode()
            try:
                await trio.to_thread.run_sync(
                    write_index, self.index_path, self.data_dir, data, unsynced
                )
            except OSError as exc:
                log.warning("cache index %s not written: %s", self.index_path, exc)

    def close(self, meta: MetaCache | None = None) -> None:
        """At unmount: complete copies of pinned files are kept (and indexed); every
        other copy goes."""
        for key, cached in list(self.copies.items()):
            if not (self.pins.pinned(key) and self._store(key, cached)):
                cached.remote.retire()
        self.copies.clear()
        for key in [k for k in self.stored if not self.pins.pinned(k)]:
            self.drop(key)
        if self.index_path is None:
            return
        self._index_copies()
        if meta is not None:
            self.pins.refresh_from(meta)
        try:
            self.pins.save(self.index_path, self.data_dir)
        except OSError as exc:
            log.warning("cache index %s not written: %s", self.index_path, exc)
