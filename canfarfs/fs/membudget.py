"""One bound on the file bytes the mount holds in memory: read-ahead and write buffers.

Downloaded bytes reach readers from memory (``cachefile.py``): the disk cache is filled
behind them, off their path. What bounds that memory is this budget, shared by every
file. A downloader that would exceed it first reclaims, from any file, what memory no
longer needs to hold: bytes already on disk, then bytes a reader has consumed (which
then are not cached: a one-pass stream the disk could not keep up with). If nothing can
be reclaimed it waits for a reader to consume, or for the disk to catch up; bytes that
a reader is waiting for are always let in, so two downloads can never starve each other.
Write buffers (the queues of streaming uploads) take their share with :meth:`acquire`.
"""

from __future__ import annotations

import weakref
from typing import Protocol

import trio

MiB = 1024 * 1024
#: Default bound: peak RSS about 115 MB reading arc, 155 MB vault (docs/performance.md).
DEFAULT_BYTES = 48 * MiB


class Holder(Protocol):
    """Something holding budgeted bytes that it can give back on request."""

    def reclaim(self, want: int, *, consumed: bool) -> int:
        """Free up to ``want`` bytes: on-disk ones, or with ``consumed`` also those
        read already; return how many were freed."""
        ...


class MemoryBudget:
    """Bytes held across the mount, and the holders to reclaim them from."""

    def __init__(self, capacity: int = DEFAULT_BYTES) -> None:
        self.capacity = capacity
        self.used = 0
        #: Highest ``used`` seen (for status and benchmarks).
        self.peak = 0
        self._holders: weakref.WeakSet[Holder] = weakref.WeakSet()
        self._changed = trio.Event()

    def register(self, holder: Holder) -> None:
        self._holders.add(holder)

    def fits(self, n: int) -> bool:
        return self.used + n <= self.capacity

    def make_room(self, n: int) -> bool:
        """Reclaim until ``n`` more bytes fit (on-disk bytes first); True if they do."""
        for consumed in (False, True):
            if self.fits(n):
                return True
            for holder in list(self._holders):
                holder.reclaim(self.used + n - self.capacity, consumed=consumed)
                if self.fits(n):
                    return True
        return self.fits(n)

    async def acquire(self, n: int) -> None:
        """Wait until ``n`` bytes fit (reclaiming what read-ahead can give back), then
        take them: for write buffers, which cannot be reclaimed. The caller bounds the
        wait and gives the bytes back."""
        while not self.make_room(n):
            await self.changed()
        self.take(n)

    def take(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)

    def give(self, n: int) -> None:
        self.used -= n
        self._changed.set()
        self._changed = trio.Event()

    async def changed(self) -> None:
        """Wait until some bytes were given back (the caller bounds the wait)."""
        await self._changed.wait()

    def poke(self) -> None:
        """Wake waiters without freeing anything (something became reclaimable)."""
        self._changed.set()
        self._changed = trio.Event()
