"""Fetched content of the read-only files (``info``, ``logs``, ``images``…): a short-lived
cache shared by getattr and open, so a size and the bytes read agree, and the handles
that serve it.

Each entry is fetched by one task at a time; open asks for content fetched after the call
began (fresh at each open); getattr accepts content up to ``max_age`` seconds old. Logs
only grow: a shorter answer (the session ended and the server has nothing) never
replaces a longer one, so ``tail -f`` sees no truncation.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from canfarfs import errors

Key = tuple[str, str]


@dataclass(frozen=True)
class Snap:
    data: bytes
    #: trio.current_time() when fetched.
    at: float
    mtime_ns: int = field(default_factory=time.time_ns)


Fetcher = Callable[[Key], Awaitable[dict[Key, bytes]]]


class ContentCache:
    """Content by (session id or "", file name). ``fetch`` returns one or more entries
    (one info request fills ``info``, ``status`` and ``url``)."""

    def __init__(self, fetch: Fetcher, monotonic: frozenset[str] = frozenset({"logs"})) -> None:
        self._fetch = fetch
        self._monotonic = monotonic
        self._snaps: dict[Key, Snap] = {}
        self._locks: dict[Key, trio.Lock] = {}

    def peek(self, key: Key) -> Snap | None:
        return self._snaps.get(key)

    async def get(self, key: Key, max_age: float) -> Snap:
        """Content fetched at most ``max_age`` seconds before this call (0: after it)."""
        since = trio.current_time() - max_age
        snap = self._snaps.get(key)
        if snap is not None and snap.at >= since:
            return snap
        lock = self._locks.setdefault(key, trio.Lock())
        async with lock:
            snap = self._snaps.get(key)
            if snap is not None and snap.at >= since:
                return snap
            fetched = await self._fetch(key)
            now = trio.current_time()
            for k, data in fetched.items():
                old = self._snaps.get(k)
                if k[1] in self._monotonic and old is not None and len(data) < len(old.data):
                    data = old.data
                self._snaps[k] = Snap(data, now)
            return self._snaps[key]

    def put(self, key: Key, data: bytes) -> None:
        self._snaps[key] = Snap(data, trio.current_time())

    def drop(self, sid: str) -> None:
        for key in [k for k in self._snaps if k[0] == sid]:
            del self._snaps[key]

    def prune(self, keep: set[str], older_than: float) -> None:
        """Forget entries of sessions not in ``keep`` and any not fetched since
        ``older_than`` (open handles keep their own snapshots)."""
        for key in [
            k for k, s in self._snaps.items() if (k[0] and k[0] not in keep) or s.at < older_than
        ]:
            del self._snaps[key]
        for key in [
            k for k, lock in self._locks.items() if k not in self._snaps and not lock.locked()
        ]:
            del self._locks[key]


class SnapshotHandle:
    """A read-only file's content as it was at open."""

    direct_io = True

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, offset: int, size: int) -> bytes:
        return self.data[offset : offset + size]

    async def write(self, offset: int, data: bytes) -> int:
        raise errors.NotPermitted("read-only file")

    async def truncate(self, size: int) -> None:
        raise errors.NotPermitted("read-only file")

    async def flush(self) -> None:
        return None

    async def fsync(self) -> None:
        """fsync(): as a close (nothing here is uploaded)."""
        await self.flush()

    async def release(self) -> None:
        return None


class LogHandle(SnapshotHandle):
    """``logs`` while open: a read reaching past the snapshot fetches newer output
    (at most every ``min_age`` seconds), so readers that follow see it grow."""

    def __init__(self, snap: Snap, refresh: Callable[[], Awaitable[Snap]], min_age: float) -> None:
        super().__init__(snap.data)
        self.snap = snap
        self.refresh = refresh
        self.min_age = min_age

    async def read(self, offset: int, size: int) -> bytes:
        if (
            offset + size > len(self.snap.data)
            and trio.current_time() - self.snap.at >= self.min_age
        ):
            newer = await self.refresh()
            if len(newer.data) >= len(self.snap.data):
                self.snap = newer
        return self.snap.data[offset : offset + size]
