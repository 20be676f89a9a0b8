"""Reading remote files: downloads feed a :class:`CacheFile`, readers wait on it.

* arc ignores ``Range``: one streamed GET fills the copy from offset 0 and reads are
  served as soon as their bytes have arrived. An interrupted stream restarts from 0 and
  skips what is already here; so does a read of bytes let go before they were cached
  (a one-pass stream bigger than the cache).
* vault's storage honours ranges: a read fetches just the missing bytes, and sequential
  reading grows a read-ahead window served by several ranged GETs in flight (the
  mountpoint-s3 technique). An interrupted range resumes where it stopped.

Bytes reach readers from memory and are cached on disk behind them (cachefile.py); the
bodies themselves come through :meth:`VOSpaceClient.read_into`, so nothing here knows
threads or HTTP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from canfarfs import errors
from canfarfs.fs.cachefile import CacheFile, Intervals, cached_error
from canfarfs.fs.data import Data
from canfarfs.tasks import spawn
from canfarfs.vospace.client import DataLocation, VOSpaceClient

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Errors after which a download tries again (with backoff), resuming where it was: a
#: body shorter than asked (ProtocolError) is one more way for a transfer to break off.
TRANSIENT = (errors.Transient, errors.ProtocolError)
#: Renames followed by one download before it gives up.
MAX_RENAMES = 8


@dataclass
class ReadTotals:
    """Bytes received from the servers for reads, across a mount (status, tests)."""

    fetched: int = 0


class RemoteFile:
    """The bytes of one remote data file, filled into a :class:`CacheFile` on demand.

    Shared by every open file state that reads this version, counted in ``users``. A
    copy that left the cache index (:meth:`retire`) lives on until its last user lets
    go; one whose server path no longer holds these bytes (:meth:`orphan`, after a
    rename over it or an unlink) fetches nothing more, and answers ESTALE for bytes it
    never got.
    """

    def __init__(
        self,
        client: VOSpaceClient,
        path: str,
        cache: CacheFile,
        nursery: trio.Nursery,
        *,
        read_timeout: float = 30.0,
        attempts: int | None = None,
        initial_window: int = 1 * MiB,
        max_window: int = 64 * MiB,
        part_size: int = 16 * MiB,
        parallel: int = 4,
        version: str = "",
        totals: ReadTotals | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self.cache = cache
        self.nursery = nursery
        self.read_timeout = read_timeout
        #: Tries per download (default: the client's retry policy, net.RetryPolicy).
        self.attempts = attempts
        self.initial_window = initial_window
        self.max_window = max_window
        self.part_size = part_size
        self.location: DataLocation | None = None
        self._locating = trio.Lock()
        self._stream: trio.CancelScope | None = None
        self._stream_pos = 0
        self._pending = Intervals()
        self._limit = trio.CapacityLimiter(parallel)
        self._last_end = -1
        self._window = initial_window
        #: Which server version these bytes are (MD5, length and date).
        self.version = version
        #: Bytes received from the server (for tests, status and benchmarks).
        self.fetched = 0
        self.totals = totals if totals is not None else ReadTotals()
        #: Open file states and downloads using this copy.
        self.users = 0
        self.retired = False
        self.orphaned = False

    # -- lifetime ---------------------------------------------------------------------

    def use(self) -> RemoteFile:
        self.users += 1
        return self

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0 and not self.cache.write_to_disk and not self.cache.keep:
            # Nobody reads on, and nothing of it is being cached: stop, and give its
            # read-ahead back to the budget (else it would hold memory until evicted).
            self._stop_stream()
            self.cache.forget_unread()
        self._close_if_done()

    def retire(self) -> None:
        """Out of the cache index: drop the copy once its last user lets go."""
        self.retired = True
        self._close_if_done()

    def _close_if_done(self) -> None:
        if self.retired and self.users <= 0 and not self.cache.dropped:
            self._stop_stream()
            self.cache.close()
            self.cache.path.unlink(missing_ok=True)

    def orphan(self) -> None:
        """The server path no longer holds these bytes: fetch nothing more from it."""
        self.orphaned = True
        self._stop_stream()
        if not self.cache.complete:
            self.cache.fail(
                errors.Stale(
                    f"{self.client.service}:{self.path} was replaced or deleted before all "
                    "of it was read"
                )
            )

    def rename(self, path: str) -> None:
        """The file moved on the server: fetch what is missing from its new path."""
        self.path = path
        self.location = None

    async def fill_all(self) -> bool:
        """Fetch every byte not yet here and keep them all (a removed file's open
        readers need them); False when that failed (each wait is bounded)."""
        self.cache.keep = True
        pos = 0
        while not self.cache.complete and not self.orphaned:
            gaps = self.cache.filled.missing(pos, self.size)
            if not gaps:
                pos = 0
                continue
            start, end = gaps[0][0], min(gaps[0][1], gaps[0][0] + self.part_size)
            try:
                await self.read(start, end - start)
            except errors.CanfarfsError as exc:
                log.info(
                    "keeping %s:%s for its open readers failed: %s",
                    self.client.service,
                    self.path,
                    exc,
                )
                return False
            pos = end
        return self.cache.complete

    @property
    def size(self) -> int:
        return self.cache.size

    async def _locate(self) -> DataLocation:
        async with self._locating:
            while self.location is None:
                path = self.path
                loc = await self.client.locate(path, self.size)
                if loc is None:
                    loc = DataLocation(url="", size=0, ranges=False, needs_auth=False)
                if self.path == path:  # else renamed meanwhile: locate the new name
                    self.location = loc
            return self.location

    # -- reading ----------------------------------------------------------------------

    async def read(self, offset: int, size: int) -> Data:
        """Bytes [offset, offset+size), waiting (bounded) for them to arrive."""
        if offset >= self.size or size <= 0:
            return b""
        end = min(offset + size, self.size)
        asked = False
        while True:
            if self.cache.filled.covers(offset, end):
                if (
                    not asked
                    and self.location is not None
                    and self.location.ranges
                    and not self.cache.complete
                ):
                    self._request_ranges(offset, end)  # keep the read-ahead going
                data = self.cache.read_now(offset, end - offset)
                if data is not None:
                    return data
            if self.orphaned:
                raise errors.Stale(
                    f"{self.client.service}:{self.path} was replaced or "
                    "deleted before these bytes were read"
                )
            self.cache.error = None
            loc = await self._locate()
            if loc.ranges:
                self._request_ranges(offset, end)
            else:
                self._ensure_stream(offset, end)
            asked = True
            try:
                with trio.fail_after(self.read_timeout):
                    await self.cache.wait_for(offset, end)
            except trio.TooSlowError:
                raise errors.Timeout(
                    f"read {self.client.service}:{self.path}: no data for {self.read_timeout:g} s"
                ) from None
            except errors.CanfarfsError:
                raise
            except Exception as exc:
                raise cached_error(exc) from exc

    def prefetch_all(self) -> None:
        """Start filling the whole file (arc: the one stream; vault: the first window)."""
        if self.size and not self.cache.complete:
            spawn(
                self.nursery, self.read, 0, 1, what=f"prefetch of {self.client.service}:{self.path}"
            )

    async def _accept(self, pos: int, data: bytes) -> bool:
        """Take a downloaded piece; False stops the download (nobody needs the rest)."""
        if self.orphaned:
            return False
        self.fetched += len(data)
        self.totals.fetched += len(data)
        return await self.cache.accept(pos, data)

    # -- vault: ranges with read-ahead ------------------------------------------------

    def _request_ranges(self, start: int, end: int) -> None:
        """Ask for what [start, end) lacks; on a sequential read also for the window after
        it, topped up (and doubled) whenever less than half a window is left ahead, so
        that read-ahead never stalls and its requests stay large."""
        sequential = self._last_end >= 0 and 0 <= start - self._last_end <= self._window
        self._last_end = end
        if not sequential:
            self._window = self.initial_window
            self._ask(start, end)
            return
        if self._asked_until(end) - end >= min(self._window // 2, self.size - end):
            self._ask(start, end)  # a no-op when read-ahead asked for it already
            return
        self._window = min(self._window * 2, self.max_window)
        self._ask(start, min(self.size, end + self._window))

    def _asked_until(self, pos: int) -> int:
        """End of the run from ``pos`` that is here or already asked for."""
        while True:
            reach = max(self.cache.filled.reach(pos), self._pending.reach(pos))
            if reach == pos:
                return pos
            pos = reach

    def _ask(self, start: int, want_end: int) -> None:
        for s, e in self.cache.filled.missing(start, want_end):
            for gs, ge in self._pending.missing(s, e):
                for part in range(gs, ge, self.part_size):
                    pe = min(part + self.part_size, ge)
                    self._pending.add(part, pe)
                    spawn(
                        self.nursery,
                        self._fetch_range,
                        part,
                        pe,
                        on_error=self._failed,
                        what=f"range {part} of {self.client.service}:{self.path}",
                    )

    async def _fetch_range(self, start: int, end: int) -> None:
        try:
            async with self._limit:
                await self._with_retries(start, end, f"range {start}-{end}")
        finally:
            # In flight no more: what is still missing is asked for by the next read.
            self._pending.remove(start, end)

    def _failed(self, exc: BaseException) -> None:
        """A background fetch failed unexpectedly: its waiters get the error."""
        self.cache.fail(cached_error(exc))

    # -- arc: one streamed body -------------------------------------------------------

    def _ensure_stream(self, start: int, end: int) -> None:
        """A stream is running that will bring [start, end): start one, or restart from
        0 if the running one went past some of it (those bytes were let go uncached)."""
        if self._stream is not None and not self.cache.filled.missing(
            start, min(end, self._stream_pos)
        ):
            return
        self._stop_stream()
        scope = trio.CancelScope()
        self._stream = scope
        self._stream_pos = 0
        spawn(
            self.nursery,
            self._stream_whole,
            scope,
            on_error=self._failed,
            what=f"download of {self.client.service}:{self.path}",
        )

    def _stop_stream(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    async def _stream_whole(self, scope: trio.CancelScope) -> None:
        try:
            with scope:
                await self._with_retries(0, self.size, "stream", restart=True)
        finally:
            if self._stream is scope:
                self._stream = None

    # -- the one retry loop -------------------------------------------------------------

    async def _with_retries(
        self, start: int, end: int, what: str, *, restart: bool = False
    ) -> None:
        """Fetch [start, end): transient failures are retried with the client's policy
        (net.RetryPolicy, the one every request follows), resuming at the first byte
        still missing (``restart``: from 0, a body without ranges)."""
        policy = self.client.http.retry
        attempts = self.attempts or policy.attempts
        pos = start
        renames = 0
        attempt = 0
        while attempt < attempts:
            path = self.path
            try:
                await self._fetch(pos, end, restart=restart)
                return
            except errors.NotFound as exc:
                # Renamed while the request was under way (the old name is gone): the
                # same bytes are at the new name. Anything else not found is final.
                if self.path == path or self.orphaned or renames >= MAX_RENAMES:
                    self._give_up(exc)
                    return
                renames += 1
                continue
            except TRANSIENT as exc:
                log.info(
                    "%s of %s:%s interrupted (%s); resuming",
                    what,
                    self.client.service,
                    self.path,
                    exc,
                )
                gaps = self.cache.filled.missing(start, end)
                if not gaps or self.cache.dropped or self.orphaned:
                    return
                pos = start if restart else gaps[0][0]
                if attempt == attempts - 1:
                    self._give_up(exc)
                    return
                await policy.sleep(policy.delay(attempt))
                attempt += 1
            except errors.CanfarfsError as exc:
                self._give_up(exc)
                return

    def _give_up(self, exc: BaseException) -> None:
        log.warning("reading %s:%s failed: %s", self.client.service, self.path, exc)
        self.cache.fail(cached_error(exc))

    async def _fetch(self, start: int, end: int, *, restart: bool) -> None:
        """One GET of [start, end) into the cache (stopping early when told to)."""
        loc = await self._locate()
        if self.cache.dropped or self.orphaned:
            return

        stopped = False

        async def accept(pos: int, data: bytes) -> bool:
            nonlocal stopped
            more = await self._accept(pos, data)
            if restart:
                self._stream_pos = pos + len(data)
            stopped = stopped or not more
            return more

        reached = await self.client.read_into(
            loc, start, end, accept, read_timeout=self.read_timeout
        )
        if reached < end and not stopped and not self.cache.dropped and not self.orphaned:
            raise errors.ProtocolError(f"body ended at {reached} of {end} bytes")
