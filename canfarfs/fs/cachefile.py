"""A sparse local file that remote bytes are filled into, and readers wait on.

Filled ranges are tracked as a sorted list of disjoint intervals; every fill wakes the
waiters, who re-check their range. Fills are written from a thread with a limiter;
reads of filled bytes are inline (they come from the page cache).
"""

from __future__ import annotations

import bisect
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import trio

from canfarfs import errors

DISK = trio.CapacityLimiter(8)


class Intervals:
    """Disjoint half-open [start, end) intervals, merged on insert."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        i = bisect.bisect_left(self.ends, start)
        j = bisect.bisect_right(self.starts, end)
        if i < j:
            start = min(start, self.starts[i])
            end = max(end, self.ends[j - 1])
        self.starts[i:j] = [start]
        self.ends[i:j] = [end]

    def covers(self, start: int, end: int) -> bool:
        if end <= start:
            return True
        i = bisect.bisect_right(self.starts, start) - 1
        return i >= 0 and self.ends[i] >= end

    def reach(self, pos: int) -> int:
        """The end of the interval holding ``pos`` (``pos`` itself if none does)."""
        i = bisect.bisect_right(self.starts, pos) - 1
        return max(pos, self.ends[i]) if i >= 0 else pos

    def missing(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) not yet covered."""
        gaps = []
        pos = start
        i = max(bisect.bisect_right(self.starts, start) - 1, 0)
        while pos < end and i < len(self.starts):
            s, e = self.starts[i], self.ends[i]
            if e <= pos:
                i += 1
                continue
            if s > pos:
                gaps.append((pos, min(s, end)))
            pos = max(pos, e)
            i += 1
        if pos < end:
            gaps.append((pos, end))
        return gaps

    @property
    def total(self) -> int:
        return sum(e - s for s, e in zip(self.starts, self.ends, strict=True))


class CacheFile:
    """``size`` bytes of one remote file, filled in any order.

    The descriptor is closed only when nothing uses it any more: :meth:`close` marks the
    copy dropped, and a writer or downloader holding it (:meth:`held`) keeps the number
    valid until it lets go. A closed number could otherwise be reused by another file
    under a worker thread, or fail a read with EBADF.
    """

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.filled = Intervals()
        self.error: BaseException | None = None
        self._changed = trio.Event()
        self._holds = 0
        #: Set once the copy left the cache: fillers stop, nothing new may start.
        self.dropped = False
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(fd, size)
        self.fd = fd

    @property
    def complete(self) -> bool:
        return self.filled.covers(0, self.size)

    @contextlib.contextmanager
    def held(self) -> Iterator[int]:
        """The descriptor, kept open until the block ends (even if dropped meanwhile)."""
        if self.fd < 0:
            raise errors.Stale(f"cached copy {self.path.name} was dropped")
        self._holds += 1
        try:
            yield self.fd
        finally:
            self._holds -= 1
            self._close_if_unused()

    async def write(self, offset: int, data: bytes) -> None:
        """Write filled bytes (nothing once the copy was dropped: it left the cache)."""
        if self.dropped:
            return
        with self.held() as fd:
            await trio.to_thread.run_sync(os.pwrite, fd, data, offset, limiter=DISK)
        self.fill(offset, offset + len(data))

    def fill(self, start: int, end: int) -> None:
        """Bytes [start, end) were written (by ``write`` or another writer of ``fd``)."""
        self.filled.add(start, end)
        self._wake()

    def fail(self, exc: BaseException) -> None:
        """A filler gave up: waiters see this error (until a new filler clears it)."""
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, start: int, end: int) -> None:
        """Return once [start, end) is filled; raise the filler's error if it failed.

        The caller bounds the wait (``trio.fail_after``).
        """
        end = min(end, self.size)
        while not self.filled.covers(start, end):
            if self.error is not None:
                raise self.error
            if self.dropped:
                raise errors.Stale(f"cached copy {self.path.name} was dropped")
            await self._changed.wait()

    async def read(self, offset: int, size: int) -> bytes:
        """Read filled bytes. Inline, as s3ql reads its cache: the bytes were written
        moments ago and sit in the page cache, so a thread hop would cost more than the
        copy (docs/performance.md)."""
        size = max(0, min(size, self.size - offset))
        if size == 0:
            return b""
        with self.held() as fd:
            return os.pread(fd, size, offset)

    def close(self) -> None:
        """Drop the copy: its descriptor is closed once no writer or reader holds it."""
        self.dropped = True
        self._wake()
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        if self.dropped and self._holds == 0 and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def cached_error(exc: BaseException) -> errors.CanfarfsError:
    """The error a reader sees for a filler's failure."""
    if isinstance(exc, errors.CanfarfsError):
        return exc
    return errors.Unavailable(f"download failed: {exc}")
