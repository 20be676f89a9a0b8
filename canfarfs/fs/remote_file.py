"""Reading remote files through the local cache.

* arc ignores ``Range``: one streamed GET fills the cache file from offset 0 and reads
  are served as soon as their bytes have arrived. An interrupted stream restarts from 0
  and skips what is already cached.
* vault's storage honours ranges: a read fetches just the missing bytes, and sequential
  reading grows a read-ahead window served by several ranged GETs in flight (the
  mountpoint-s3 technique). An interrupted range resumes where it stopped.
"""

from __future__ import annotations

import logging

import trio

from canfarfs import errors
from canfarfs.bulk import BulkGetter, Declined
from canfarfs.fs.cachefile import CacheFile, Intervals, cached_error
from canfarfs.tasks import spawn
from canfarfs.vospace.client import DataLocation, VOSpaceClient

log = logging.getLogger(__name__)

MiB = 1024 * 1024
WRITE_BATCH = 1 * MiB


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
        attempts: int = 5,
        initial_window: int = 1 * MiB,
        max_window: int = 64 * MiB,
        part_size: int = 8 * MiB,
        parallel: int = 4,
        version: str = "",
    ) -> None:
        self.client = client
        self.path = path
        self.cache = cache
        self.nursery = nursery
        self.read_timeout = read_timeout
        self.attempts = attempts
        self.initial_window = initial_window
        self.max_window = max_window
        self.part_size = part_size
        self.location: DataLocation | None = None
        self._locating = trio.Lock()
        self._streaming = False
        self._pending = Intervals()
        self._limit = trio.CapacityLimiter(parallel)
        self._last_end = -1
        self._window = initial_window
        #: Which server version these bytes are (MD5, length and date).
        self.version = version
        #: Bytes asked of the server (for tests and benchmarks).
        self.fetched = 0
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
        self._close_if_done()

    def retire(self) -> None:
        """Out of the cache index: drop the copy once its last user lets go."""
        self.retired = True
        self._close_if_done()

    def _close_if_done(self) -> None:
        if self.retired and self.users <= 0 and not self.cache.dropped:
            self.cache.close()
            self.cache.path.unlink(missing_ok=True)

    def orphan(self) -> None:
        """The server path no longer holds these bytes: fetch nothing more from it."""
        self.orphaned = True
        if not self.cache.complete:
            self.cache.fail(errors.Stale(
                f"{self.client.service}:{self.path} was replaced or deleted before all "
                "of it was read"))

    def rename(self, path: str) -> None:
        """The file moved on the server: fetch what is missing from its new path."""
        self.path = path
        self.location = None

    async def fill_all(self) -> bool:
        """Fetch every byte not yet cached (a replaced file's open readers keep their
        bytes); False when that failed (each wait is bounded by the read time-out)."""
        pos = 0
        while not self.cache.complete and not self.orphaned:
            gaps = self.cache.filled.missing(pos, self.size)
            if not gaps:
                break
            start, end = gaps[0][0], min(gaps[0][1], gaps[0][0] + self.part_size)
            try:
                await self.read(start, end - start)
            except errors.CanfarfsError as exc:
                log.info("keeping %s:%s for its open readers failed: %s",
                         self.client.service, self.path, exc)
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

    async def read(self, offset: int, size: int) -> bytes:
        """Bytes [offset, offset+size), waiting (bounded) for them to arrive."""
        if offset >= self.size or size <= 0:
            return b""
        end = min(offset + size, self.size)
        if self.orphaned and not self.cache.filled.covers(offset, end):
            raise errors.Stale(f"{self.client.service}:{self.path} was replaced or "
                               "deleted before these bytes were read")
        if self.cache.filled.covers(offset, end):
            if self.location is not None and self.location.ranges and not self.cache.complete:
                self._request_ranges(offset, end)  # keep the read-ahead going
        else:
            self.cache.error = None
            loc = await self._locate()
            if loc.ranges:
                self._request_ranges(offset, end)
            elif not self._streaming:
                self._streaming = True
                spawn(self.nursery, self._stream_whole, loc,
                      what=f"download of arc:{self.path}", on_error=self._failed)
            try:
                with trio.fail_after(self.read_timeout):
                    await self.cache.wait_for(offset, end)
            except trio.TooSlowError:
                raise errors.Timeout(
                    f"read {self.client.service}:{self.path}: no data for "
                    f"{self.read_timeout:g} s") from None
            except errors.CanfarfsError:
                raise
            except Exception as exc:
                raise cached_error(exc) from exc
        return await self.cache.read(offset, end - offset)

    def prefetch_all(self) -> None:
        """Start filling the whole file (arc: the one stream; vault: the first window)."""
        if self.size and not self.cache.complete:
            spawn(self.nursery, self.read, 0, 1,
                  what=f"prefetch of {self.client.service}:{self.path}")

    def _failed(self, exc: BaseException) -> None:
        """A background fetch failed unexpectedly: its waiters get the error."""
        self._streaming = False
        self.cache.fail(cached_error(exc))

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
        """End of the run from ``pos`` that is cached or already asked for."""
        while True:
            reach = max(self.cache.filled.reach(pos), self._pending.reach(pos))
            if reach == pos:
                return pos
            pos = reach

    def _ask(self, start: int, want_end: int) -> None:
        for s, e in self.cache.filled.missing(start, want_end):
            for gs, ge in self._pending.missing(s, e):
                self._pending.add(gs, ge)
                for part in range(gs, ge, self.part_size):
                    spawn(self.nursery, self._fetch_range, part,
                          min(part + self.part_size, ge), on_error=self._failed,
                          what=f"range {part} of {self.client.service}:{self.path}")

    async def _fetch_range(self, start: int, end: int) -> None:
        async with self._limit:
            pos = start
            for attempt in range(self.attempts):
                try:
                    pos = await self._copy(start=pos, end=end)
                    return
                except (errors.Unavailable, errors.Timeout, errors.ProtocolError) as exc:
                    log.info("range %d-%d of %s interrupted at %d (%s); resuming",
                             start, end, self.path, pos, exc)
                    pos = self._resume_point(pos, end)
                    if pos >= end:
                        return
                    if attempt == self.attempts - 1:
                        self._give_up(start, end, exc)
                        return
                    await trio.sleep(min(0.1 * 2**attempt, 2.0))
                except errors.CanfarfsError as exc:
                    self._give_up(start, end, exc)
                    return

    def _resume_point(self, pos: int, end: int) -> int:
        gaps = self.cache.filled.missing(pos, end)
        return gaps[0][0] if gaps else end

    def _give_up(self, start: int, end: int, exc: BaseException) -> None:
        log.warning("reading %s:%s failed: %s", self.client.service, self.path, exc)
        # Forget the pending mark so a later read can try again.
        pending = Intervals()
        for s, e in zip(self._pending.starts, self._pending.ends, strict=True):
            for gs, ge in _subtract((s, e), (start, end)):
                pending.add(gs, ge)
        self._pending = pending
        self.cache.fail(cached_error(exc))

    # -- arc: one streamed body -------------------------------------------------------

    async def _stream_whole(self, loc: DataLocation) -> None:
        try:
            for attempt in range(self.attempts):
                try:
                    await self._copy(start=0, end=self.size, skip_filled=True)
                    return
                except (errors.Unavailable, errors.Timeout, errors.ProtocolError) as exc:
                    log.info("stream of %s interrupted (%s); restarting", self.path, exc)
                    if attempt == self.attempts - 1:
                        self.cache.fail(cached_error(exc))
                        return
                    await trio.sleep(min(0.1 * 2**attempt, 2.0))
                except errors.CanfarfsError as exc:
                    self.cache.fail(exc)
                    return
        finally:
            self._streaming = False

    # -- the copy loop ----------------------------------------------------------------

    async def _copy(self, *, start: int, end: int, skip_filled: bool = False) -> int:
        """Stream [start, end) into the cache; return the position reached.

        With ``skip_filled`` (a restarted arc stream) bytes already cached are not
        written again. Every wait for the next chunk is bounded.
        """
        loc = await self._locate()
        bulk = self.client.http.bulk
        if bulk is not None:
            reached = await self._copy_in_thread(bulk, loc, start, end)
            if reached is not None:
                return reached
        pos = start
        batch: list[bytes] = []
        batch_start = pos
        batch_len = 0
        self.fetched += end - start
        async with self.client.open_bytes(loc, start, end if loc.ranges else None) as r:
            chunks = r.aiter_raw()
            while True:
                try:
                    with trio.fail_after(self.read_timeout):
                        chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                except trio.TooSlowError:
                    raise errors.Timeout(f"no data from server for {self.read_timeout:g} s") \
                        from None
                except Exception as exc:
                    raise errors.Unavailable(f"body interrupted: {exc}") from exc
                if self.cache.dropped or self.orphaned:  # nobody needs the rest
                    return end
                if skip_filled and self.cache.filled.covers(pos, pos + len(chunk)):
                    pos += len(chunk)
                    batch_start = pos
                    continue
                batch.append(chunk)
                batch_len += len(chunk)
                pos += len(chunk)
                if batch_len >= WRITE_BATCH:
                    await self.cache.write(batch_start, b"".join(batch))
                    batch, batch_start, batch_len = [], pos, 0
        if batch:
            await self.cache.write(batch_start, b"".join(batch))
        if pos < end:
            raise errors.ProtocolError(f"body ended at {pos} of {end} bytes")
        return pos


    async def _copy_in_thread(self, bulk: BulkGetter, loc: DataLocation, start: int,
                              end: int) -> int | None:
        """The same copy by a worker thread (canfarfs.bulk); None if the server answered
        something else, which the async path then turns into the proper error."""
        headers = {"Accept-Encoding": "identity"}
        if loc.needs_auth:
            headers.update(await self.client.http.credentials.headers())
        if loc.ranges:
            headers["Range"] = f"bytes={start}-{end - 1}"
        elif start:
            raise errors.ProtocolError("a stream without ranges starts at 0")
        self.fetched += end - start
        self.client.http.sent += 1
        cache = self.cache

        def stop() -> bool:
            return cache.dropped or self.orphaned

        if stop():
            return end
        with cache.held() as fd:
            result = await bulk.get_into(loc.url, headers, fd, start, cache.fill,
                                         ranged=loc.ranges, stop=stop)
        if isinstance(result, Declined):
            self.fetched -= end - start
            return None
        if stop():  # the copy was dropped or replaced: nobody needs the rest
            return end
        if result < end:
            raise errors.ProtocolError(f"body ended at {result} of {end} bytes")
        return result


def _subtract(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    out = []
    if a[0] < b[0]:
        out.append((a[0], min(a[1], b[0])))
    if a[1] > b[1]:
        out.append((max(a[0], b[1]), a[1]))
    return [x for x in out if x[1] > x[0]]
