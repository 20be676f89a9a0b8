"""Uploads that stream while a new file is written sequentially.

A large ``cp`` into arc would otherwise pay twice: once to stage the bytes locally, once
to upload them at ``close()``. Once a new arc file has grown past :data:`STREAM_AFTER`
bytes written strictly in order, an :class:`UploadStream` opens one chunked ``PUT`` to
arc's ``/files`` and sends each later write as it arrives, so ``close()`` only finishes the
tail and compares the server's MD5 with ours.

The staging file is still written in full, so nothing depends on the stream: a write
out of order, a truncate, a rename, an unlink, a stall longer than the timeout or any
error aborts it (the server discards an unfinished body), and ``close()`` uploads the
staged bytes the ordinary way. Memory is bounded: :data:`QUEUE` chunks per stream, at
most :data:`MAX_STREAMS` streams at once (a file that finds no free slot is staged
only), and every queued chunk counted in the mount's one memory budget (membudget.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import trio

from canfarfs import errors
from canfarfs.fs.membudget import MemoryBudget

log = logging.getLogger(__name__)

#: Stream a new file's upload once this many bytes were written in order.
STREAM_AFTER = 8 * 1024 * 1024
#: Writes queued per stream (each at most the kernel's 1 MiB max_write).
QUEUE = 16
#: Streams at once; with QUEUE this bounds the memory held by streaming uploads.
MAX_STREAMS = 4
SLOTS = trio.CapacityLimiter(MAX_STREAMS)
_READ = 1024 * 1024

#: ``put(body) -> the server's MD5 (hex) or None`` for one chunked PUT.
Put = Callable[[AsyncIterator[bytes]], Awaitable[str | None]]


class UploadStream:
    """One chunked PUT fed by a file's in-order writes; see the module docstring."""

    def __init__(
        self,
        put: Put,
        staged: Path,
        prefix: int,
        timeout: float,
        nursery: trio.Nursery,
        slot: object | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        #: Bytes handed to the stream so far (the staged prefix included).
        self.upto = prefix
        self.broken: str | None = None
        self._staged = staged
        self._prefix = prefix
        self._timeout = timeout
        self._send, self._receive = trio.open_memory_channel[bytes](QUEUE)
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        self._server_md5: str | None = None
        self._error: BaseException | None = None
        self._put = put
        self._slot = slot
        self._budget = budget if budget is not None else MemoryBudget()
        #: Bytes taken from the budget for chunks queued or being sent.
        self._held = 0
        nursery.start_soon(self._run)

    @classmethod
    def start(
        cls,
        put: Put,
        staged: Path,
        prefix: int,
        timeout: float,
        nursery: trio.Nursery,
        budget: MemoryBudget | None = None,
    ) -> UploadStream | None:
        """A stream, or None when :data:`MAX_STREAMS` are already running."""
        token = object()
        try:
            SLOTS.acquire_on_behalf_of_nowait(token)
        except trio.WouldBlock:
            return None
        return cls(put, staged, prefix, timeout, nursery, slot=token, budget=budget)

    def _give_back(self, n: int) -> None:
        n = min(n, self._held)
        self._held -= n
        if n:
            self._budget.give(n)

    async def _body(self) -> AsyncIterator[bytes]:
        """The staged prefix (read from the page cache), then each write as it comes."""
        f = await trio.to_thread.run_sync(self._staged.open, "rb")
        try:
            left = self._prefix
            while left > 0:
                chunk = await trio.to_thread.run_sync(f.read, min(_READ, left))
                if not chunk:
                    raise errors.CanfarfsError("staged prefix shorter than written")
                left -= len(chunk)
                yield chunk
        finally:
            await trio.to_thread.run_sync(f.close)
        async with self._receive:
            async for chunk in self._receive:
                yield chunk
                self._give_back(len(chunk))  # sent: the client asked for the next

    async def _run(self) -> None:
        try:
            with self._scope:
                self._server_md5 = await self._put(self._body())
        except Exception as exc:  # any failure means: upload the staged copy instead
            self._error = exc
            self.broken = self.broken or str(exc)
        finally:
            if self._scope.cancelled_caught and self._error is None:
                self._error = errors.CanfarfsError(f"stream aborted: {self.broken}")
            self._receive.close()  # a feed waiting on a dead stream fails at once
            self._give_back(self._held)  # chunks queued or in flight are dropped
            self._release()
            self._done.set()

    def _release(self) -> None:
        if self._slot is not None:
            SLOTS.release_on_behalf_of(self._slot)
            self._slot = None

    async def feed(self, offset: int, data: bytes) -> None:
        """Send the write at ``offset``; abort the stream if it is out of order or stuck."""
        if self.broken is not None:
            return
        if offset != self.upto:
            self.abort(f"write at {offset}, stream at {self.upto}")
            return
        with trio.move_on_after(self._timeout) as waited:
            await self._budget.acquire(len(data))
            self._held += len(data)
            try:
                await self._send.send(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._give_back(len(data))
                self.abort(str(self._error or "upload ended early"))
                return
        if waited.cancelled_caught:
            self.abort(f"no progress for {self._timeout:g} s")
            return
        if self._done.is_set():  # the stream ended while the chunk was queued
            self._give_back(self._held)
        self.upto += len(data)

    def abort(self, why: str) -> None:
        """Give up on the stream (the server discards the unfinished body)."""
        if self.broken is None:
            self.broken = why
            log.info("streaming upload abandoned, the staged copy will be uploaded: %s", why)
        self._scope.cancel()
        self._send.close()

    async def finish(self) -> str | None:
        """End the body and wait for the answer: the server's MD5 (None if it sent none).

        Raises when the stream broke or the answer does not come within the timeout.
        """
        if self.broken is not None:
            self.abort(self.broken)
            raise errors.CanfarfsError(f"streaming upload abandoned: {self.broken}")
        await self._send.aclose()
        with trio.move_on_after(self._timeout) as waited:
            await self._done.wait()
        if waited.cancelled_caught:
            self.abort(f"no answer within {self._timeout:g} s")
            raise errors.Timeout(f"streaming upload: no answer within {self._timeout:g} s")
        if self._error is not None:
            raise self._error
        return self._server_md5
