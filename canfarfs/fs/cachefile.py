"""The bytes of one remote file as they arrive: in memory first, on disk behind.

Downloaded pieces are handed to :meth:`CacheFile.accept` and are readable at once, from
memory; a write-behind task then copies them into a sparse local file, off the reader's
path (a slow cache disk, or a page cache busy reclaiming, never holds a reader up).
Memory is bounded by one :class:`~canfarfs.fs.membudget.MemoryBudget` for the mount:
pieces on disk are let go first, then pieces already read, which are then simply not
cached (a one-pass stream faster than the disk). Readable ranges are tracked as sorted
disjoint intervals; every arrival wakes the waiters, who re-check their range. Reads of
bytes on disk are inline (they come from the page cache).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import trio

from canfarfs import errors
from canfarfs.fs.data import Data
from canfarfs.fs.membudget import MemoryBudget
from canfarfs.tasks import spawn

log = logging.getLogger(__name__)

DISK = trio.CapacityLimiter(8)
#: How long a download waits for memory before it stops (a reader that went away).
ROOM_WAIT = 30.0


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

    def remove(self, start: int, end: int) -> None:
        """Take [start, end) out of the intervals."""
        if end <= start:
            return
        i = bisect.bisect_right(self.ends, start)
        j = i
        keep_s: list[int] = []
        keep_e: list[int] = []
        while j < len(self.starts) and self.starts[j] < end:
            s, e = self.starts[j], self.ends[j]
            if s < start:
                keep_s.append(s)
                keep_e.append(start)
            if e > end:
                keep_s.append(end)
                keep_e.append(e)
            j += 1
        self.starts[i:j] = keep_s
        self.ends[i:j] = keep_e

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


class _Piece:
    """Downloaded bytes held in memory until they are on disk or no longer needed."""

    __slots__ = ("consumed", "data", "on_disk", "start", "writing")

    def __init__(self, start: int, data: bytes) -> None:
        self.start = start
        self.data = data
        self.consumed = False
        self.on_disk = False
        self.writing = False

    @property
    def end(self) -> int:
        return self.start + len(self.data)


class CacheFile:
    """``size`` bytes of one remote file, filled in any order.

    ``filled`` is what can be read now (from memory or disk), ``on_disk`` what the local
    file holds. With ``write_to_disk`` off (a file bigger than the cache) nothing is
    written: pieces are let go once read. With ``keep`` on (a removed file's readers
    still need its bytes) nothing is let go before it is on disk. With ``present``, the
    local file already holds all ``size`` bytes (a kept copy, opened again).

    The descriptor is closed only when nothing uses it any more: :meth:`close` marks the
    copy dropped, and a writer holding it (:meth:`held`) keeps the number valid until it
    lets go. A closed number could otherwise be reused by another file under a worker
    thread, or fail a read with EBADF.
    """

    def __init__(
        self,
        path: Path,
        size: int,
        *,
        budget: MemoryBudget | None = None,
        nursery: trio.Nursery | None = None,
        write_to_disk: bool = True,
        present: bool = False,
    ) -> None:
        self.path = path
        self.size = size
        self.filled = Intervals()
        self.on_disk = Intervals()
        self.error: BaseException | None = None
        self.budget = budget if budget is not None else MemoryBudget()
        self.budget.register(self)
        self.nursery = nursery
        self.write_to_disk = write_to_disk and nursery is not None
        self.keep = False
        #: Bytes let go before they reached the disk (read once, not cached).
        self.skipped = 0
        self._pieces: dict[int, _Piece] = {}
        self._starts: list[int] = []
        self._waiting: list[tuple[int, int]] = []
        self._writing = False
        self._changed = trio.Event()
        self._holds = 0
        #: Set once the copy left the cache: fillers stop, nothing new may start.
        self.dropped = False
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(fd, size)
        self.fd = fd
        if present:  # a complete copy kept on disk (readcache.py's stored copies)
            self.filled.add(0, size)
            self.on_disk.add(0, size)

    @property
    def complete(self) -> bool:
        return self.filled.covers(0, self.size)

    @property
    def in_memory(self) -> int:
        return sum(len(p.data) for p in self._pieces.values())

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

    # -- filling -------------------------------------------------------------------------

    async def accept(self, pos: int, data: bytes) -> bool:
        """Take downloaded bytes at ``pos`` (what is already filled is skipped). Waits,
        bounded, for memory; False means stop downloading (the copy was dropped, or no
        reader made room for ``ROOM_WAIT`` seconds)."""
        end = pos + len(data)
        for s, e in self.filled.missing(pos, end):
            if not await self._room(s, e):
                return False
            stored = 0
            for s2, e2 in self.filled.missing(s, e):  # another download may have come
                piece = data if (s2, e2) == (pos, end) else data[s2 - pos : e2 - pos]
                self._store(s2, piece)
                stored += e2 - s2
            if stored < e - s:  # the rest came meanwhile: give back what it took
                self.budget.give(e - s - stored)
        return not self.dropped

    async def _room(self, start: int, end: int) -> bool:
        n = end - start
        with trio.move_on_after(ROOM_WAIT):
            while not self.dropped:
                if self.budget.make_room(n) or self._wanted(start, end):
                    self.budget.take(n)
                    return True
                await self.budget.changed()
        if not self.dropped:
            log.info(
                "%s: no reader made room for read-ahead in %g s; download paused",
                self.path.name,
                ROOM_WAIT,
            )
        return False

    def _wanted(self, start: int, end: int) -> bool:
        """A reader is waiting for some of [start, end)."""
        return any(s < end and start < e for s, e in self._waiting)

    def _store(self, start: int, data: bytes) -> None:
        piece = _Piece(start, data)
        self._pieces[start] = piece
        bisect.insort(self._starts, start)
        self.filled.add(start, piece.end)
        self._wake()
        if self.write_to_disk and not self._writing and self.nursery is not None:
            self._writing = True
            spawn(
                self.nursery,
                self._write_behind,
                what=f"caching {self.path.name}",
                on_error=self._write_failed,
            )

    def _free(self, piece: _Piece) -> None:
        if self._pieces.pop(piece.start, None) is None:
            return
        self._starts.pop(bisect.bisect_left(self._starts, piece.start))
        if not piece.on_disk:
            self.filled.remove(piece.start, piece.end)
            self.skipped += len(piece.data)
        self.budget.give(len(piece.data))

    def reclaim(self, want: int, *, consumed: bool) -> int:
        """Let go of pieces on disk, or with ``consumed`` also of pieces read already
        (unless ``keep``); oldest first. Returns the bytes freed."""
        freed = 0
        for start in list(self._starts):
            if freed >= want:
                break
            p = self._pieces[start]
            if p.on_disk or (consumed and p.consumed and not p.writing and not self.keep):
                freed += len(p.data)
                self._free(p)
        return freed

    async def _write_behind(self) -> None:
        """Copy pieces to the local file, oldest first, until none is left."""
        try:
            while not self.dropped and self.write_to_disk:
                piece = next(
                    (self._pieces[s] for s in self._starts if not self._pieces[s].on_disk), None
                )
                if piece is None:
                    return
                piece.writing = True
                try:
                    with self.held() as fd:
                        await trio.to_thread.run_sync(
                            os.pwrite, fd, piece.data, piece.start, limiter=DISK
                        )
                except (OSError, OverflowError) as exc:  # full or gone: memory only now
                    self._write_failed(errors.local_disk_error(exc, f"cache {self.path.name}"))
                    return
                finally:
                    piece.writing = False
                piece.on_disk = True
                self.on_disk.add(piece.start, piece.end)
                self.filled.add(piece.start, piece.end)
                if piece.consumed:
                    self._free(piece)
                else:
                    self.budget.poke()  # reclaimable now
        finally:
            self._writing = False

    def forget_unread(self) -> None:
        """Nobody reads on and nothing more is cached: let go of every piece in memory
        (those on disk stay readable from there; the rest would be fetched again)."""
        for piece in [self._pieces[s] for s in self._starts]:
            if not piece.writing and not self.keep:
                self._free(piece)

    def _write_failed(self, exc: BaseException) -> None:
        """The cache disk failed (full, gone): serve from memory, cache nothing more."""
        log.warning("%s: not caching on disk any more: %s", self.path.name, exc)
        self.write_to_disk = False
        self.budget.poke()

    def fail(self, exc: BaseException) -> None:
        """A filler gave up: waiters see this error (until a new filler clears it)."""
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- reading -------------------------------------------------------------------------

    async def wait_for(self, start: int, end: int) -> None:
        """Return once [start, end) is filled; raise the filler's error if it failed.

        The caller bounds the wait (``trio.fail_after``).
        """
        end = min(end, self.size)
        if self.filled.covers(start, end):
            return
        want = (start, end)
        self._waiting.append(want)
        self.budget.poke()  # a download held back for memory may carry these bytes
        try:
            while not self.filled.covers(start, end):
                if self.error is not None:
                    raise self.error
                if self.dropped:
                    raise errors.Stale(f"cached copy {self.path.name} was dropped")
                await self._changed.wait()
        finally:
            self._waiting.remove(want)

    def read_now(self, offset: int, size: int) -> Data | None:
        """The bytes [offset, offset+size) if all are here (memory or disk), else None.

        Disk reads are inline, as s3ql reads its cache: the bytes were written moments
        ago and sit in the page cache, so a thread hop would cost more than the copy."""
        end = min(offset + size, self.size)
        if end <= offset:
            return b""
        if not self.filled.covers(offset, end):
            return None
        parts: list[Data] = []
        pos = offset
        while pos < end:
            i = bisect.bisect_right(self._starts, pos) - 1
            piece = self._pieces[self._starts[i]] if i >= 0 else None
            if piece is not None and pos < piece.end:
                stop = min(end, piece.end)
                data = piece.data
                parts.append(
                    data
                    if (pos, stop) == (piece.start, piece.end)
                    else memoryview(data)[pos - piece.start : stop - piece.start]
                )
                if stop == piece.end:
                    self._consumed(piece)
                pos = stop
                continue
            nxt = self._starts[i + 1] if i + 1 < len(self._starts) else end
            stop = min(end, nxt, self.on_disk.reach(pos))
            if stop <= pos:
                return None
            with self.held() as fd:
                parts.append(os.pread(fd, stop - pos, pos))
            pos = stop
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _consumed(self, piece: _Piece) -> None:
        """A reader read to the end of ``piece``: let it go if nothing else needs it."""
        piece.consumed = True
        if piece.on_disk or not (self.write_to_disk or self.keep):
            self._free(piece)
        else:
            self.budget.poke()

    async def read(self, offset: int, size: int) -> Data:
        """Wait for the bytes, then read them (the caller bounds the wait)."""
        while True:
            await self.wait_for(offset, offset + size)
            data = self.read_now(offset, size)
            if data is not None:
                return data

    def close(self) -> None:
        """Drop the copy: memory at once, the descriptor once no writer holds it."""
        self.dropped = True
        for piece in list(self._pieces.values()):
            self._pieces.pop(piece.start)
            self.budget.give(len(piece.data))
        self._starts.clear()
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
