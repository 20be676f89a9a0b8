"""Write-back (``--writeback``): close() returns once the bytes are staged and journaled
locally; this queue then uploads them in the background (docs/semantics.md, *Write-back*).

An upload starts once its file has been left alone for ``delay`` seconds (as rclone's
``--vfs-write-back``): a copy or an unpacking has the machine's cores without uploads
beside it, a file rewritten meanwhile goes up once, and one renamed or removed meanwhile
goes up under its final name or not at all. The dates and modes copies set go the same
way (later.py). Each queued item gets one task, and at most ``parallel`` are sent at
once (trio's limiter is first come, first served, so files go up in about the order
they were closed). While files are being created or written through the mount the
queue sends one item at a time (``writing()``): a copy is not slowed by the uploads of
its first files. A failed upload is tried again with backoff, for as long as the mount
lives: a transient failure (an outage, a time-out) after ``base_delay`` doubling up to
``max_delay``; a refusal (permission, quota) after ``max_delay``. ``kick()`` (the
service answers again, ``canfarfs sync``) ends every wait at once. A file still open for
writing is not uploaded: its next close queues it again. ``fsync()`` and ``canfarfs
sync`` do not wait here: they upload at once (the stage's lock keeps one upload at a
time), so durability never depends on the queue.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from canfarfs import errors


class Queued(Protocol):
    """What the queue sends: a staged file (staging.py), or a node's dates and modes
    (later.py)."""

    service: str
    path: str
    #: When it last changed (wall clock): the delay counts from here.
    mtime: float
    #: Removed meanwhile: nothing to send.
    discarded: bool

    @property
    def dirty(self) -> bool:
        """Something is still to send."""
        ...


log = logging.getLogger(__name__)

#: Uploads under way at once.
PARALLEL = 8
#: Seconds a file is left alone before its upload starts (``--writeback-delay``).
DELAY = 5.0
#: While files are being written through the mount (a create or a write within this
#: many seconds), the queue sends one item at a time: the copy keeps the cores.
GIVE_WAY = 0.5


@dataclass(frozen=True)
class Backoff:
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, tries: int, exc: errors.CanfarfsError) -> float:
        if not isinstance(exc, errors.Transient):
            return self.max_delay
        return float(min(self.max_delay, self.base_delay * 2 ** max(0, tries - 1)))


class WriteBack:
    """The background queue. ``upload(item)`` sends one item (a staged file: conflict
    check, PUT, MD5; a node's dates and modes: one update) and returns False when a
    staged file is open for writing again (its next close queues it)."""

    def __init__(
        self,
        upload: Callable[[Queued], Awaitable[bool]],
        nursery: trio.Nursery,
        *,
        parallel: int = PARALLEL,
        delay: float = DELAY,
        backoff: Backoff = Backoff(),
    ) -> None:
        self._upload = upload
        self._nursery = nursery
        self._limit = trio.CapacityLimiter(parallel)
        self._backoff = backoff
        self.delay = delay
        self._queued: set[int] = set()
        self._kicked = trio.Event()
        self._one_at_a_time = trio.CapacityLimiter(1)
        self._written_at = -GIVE_WAY

    def queue(self, item: Queued) -> None:
        """Upload ``item`` in the background (once, however often it is queued)."""
        if id(item) in self._queued:
            return
        self._queued.add(id(item))
        self._nursery.start_soon(self._run, item, name=f"write-back {item.path}")

    @property
    def queued(self) -> int:
        return len(self._queued)

    def writing(self) -> None:
        """A file is being created or written through the mount now."""
        self._written_at = trio.current_time()

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """A place among the ``parallel`` sends, and while files are being written,
        the one place among them (uploads give way to a running copy)."""
        async with self._limit:
            if trio.current_time() - self._written_at < GIVE_WAY:
                async with self._one_at_a_time:
                    yield
            else:
                yield

    def kick(self) -> None:
        """The service answers again, or ``sync`` wants everything up: end every wait
        (the delay and the backoff) now."""
        self._kicked.set()
        self._kicked = trio.Event()

    async def _settle(self, item: Queued) -> None:
        """Wait until ``item`` has not been written for ``delay`` seconds (or a kick)."""
        while True:
            left = min(self.delay, item.mtime + self.delay - time.time())
            if left <= 0:
                return
            kicked = self._kicked
            with trio.move_on_after(left):
                await kicked.wait()
                return

    async def _run(self, item: Queued) -> None:
        tries = 0
        try:
            await self._settle(item)
            while not item.discarded and item.dirty:
                async with self._turn():
                    try:
                        again = await self._upload(item)
                    except errors.CanfarfsError as exc:
                        tries += 1
                        delay = self._backoff.delay(tries, exc)
                        log.info(
                            "write-back of %s:%s failed (try %d), again in %.1f s: %s",
                            item.service,
                            item.path,
                            tries,
                            delay,
                            exc,
                        )
                    except Exception:  # a bug or a local disk error: keep the bytes, log
                        tries += 1
                        delay = self._backoff.max_delay
                        log.exception("write-back of %s:%s failed", item.service, item.path)
                    else:
                        if not again:
                            return
                        continue
                with trio.move_on_after(delay):
                    await self._kicked.wait()
        finally:
            self._queued.discard(id(item))
