"""Large download bodies received by worker threads and handed over a MiB at a time.

The async client (httpx2 over h11) costs the trio loop an h11 event, a buffer copy and
a few task switches per received piece: a 512 MiB body took ~1.45 s of the loop's time
(370 MB/s), and the same loop must also answer FUSE. Here a worker thread holds a
blocking ``http.client`` connection and gathers the body with ``read1`` (which releases
the GIL); the loop hears once per MiB, through ``accept``, which may make the thread
wait (memory is bounded) or stop it. Nothing here touches the disk: where the bytes go
is the caller's business (docs/performance.md has the figures).

Only the happy path lives here: a status other than the expected one is handed back to
the caller, which asks again through the async client to get the proper error. Every
socket wait is bounded by the read time-out; cancelling the caller shuts the socket so
the thread returns at once. Idle keep-alive connections are pooled per host.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import trio

from canfarfs import errors

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Bytes gathered before they are handed over (fewer, larger hand-overs).
FLUSH_BYTES = 1 * MiB
#: ...unless this long has passed since the last hand-over (a slow link).
FLUSH_SECONDS = 0.02
#: Idle connections older than this are not reused (servers close them first).
KEEPALIVE_SECONDS = 20.0
IDLE_PER_HOST = 32
#: Pieces on their way to ``accept`` before the receiving thread waits.
IN_FLIGHT = 4

#: Takes the bytes at an offset, in the trio thread; False stops the download.
Accept = Callable[[int, bytes], Awaitable[bool]]


@dataclass
class Declined:
    """The server answered something other than the bytes asked for."""

    status: int


@dataclass
class _Conn:
    conn: http.client.HTTPConnection
    idle_since: float


class BulkGetter:
    """GETs whose bodies are received by worker threads, one thread per body."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
        read_timeout: float,
        threads: int = 32,
    ) -> None:
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.limiter = trio.CapacityLimiter(threads)
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._lock = threading.Lock()

    async def get_into(
        self, url: str, headers: Mapping[str, str], offset: int, accept: Accept, *, ranged: bool
    ) -> int | Declined:
        """GET ``url`` and hand its body, as offsets from ``offset``, to ``accept``.

        Returns the offset reached (the caller checks it against what it expected) or
        :class:`Declined`. ``accept`` gets every received piece, also before an error is
        raised, so a caller can resume; when it answers False the copy ends early.
        Raises Timeout, Unavailable or ProtocolError; cancelling the caller shuts the
        socket.
        """
        send, receive = trio.open_memory_channel[tuple[int, bytes]](math.inf)

        def put(item: tuple[int, bytes]) -> None:  # in the trio thread
            with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                send.send_nowait(item)

        job = _Job(
            self, url, dict(headers), offset, put, trio.lowlevel.current_trio_token(), ranged
        )
        result: int | Declined = offset
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(job.hand_over, receive, accept)
            try:
                # Abandoned on cancel: the thread returns as soon as its socket is shut.
                result = await trio.to_thread.run_sync(
                    job.run, limiter=self.limiter, abandon_on_cancel=True
                )
            except trio.Cancelled:
                job.abort()
                raise
            except Exception as exc:  # raised below, once the hand-over has drained
                failure = exc
            finally:
                # Every piece the thread sent is queued before its result arrives (both
                # come through the loop's FIFO): closing here lets the hand-over drain.
                send.close()
        if job.error is not None:
            raise job.error
        if failure is not None:
            raise failure
        return job.accepted if job.stopped else result

    def take(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        """An idle connection to the host, or a new one (not yet connected)."""
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get((scheme, host, port), [])
            while idle:
                c = idle.pop()
                if now - c.idle_since < KEEPALIVE_SECONDS:
                    return c.conn
                c.conn.close()
        if scheme == "https":
            return http.client.HTTPSConnection(
                host, port, timeout=self.connect_timeout, context=self.ssl_context
            )
        return http.client.HTTPConnection(host, port, timeout=self.connect_timeout)

    def give_back(
        self, scheme: str, host: str, port: int, conn: http.client.HTTPConnection
    ) -> None:
        with self._lock:
            idle = self._idle.setdefault((scheme, host, port), [])
            if len(idle) < IDLE_PER_HOST:
                idle.append(_Conn(conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            for idle in self._idle.values():
                for c in idle:
                    c.conn.close()
            self._idle.clear()


class _Job:
    """One body: runs in a worker thread; ``abort`` may be called from the trio thread."""

    def __init__(
        self,
        getter: BulkGetter,
        url: str,
        headers: dict[str, str],
        offset: int,
        put: Callable[[tuple[int, bytes]], None],
        token: trio.lowlevel.TrioToken,
        ranged: bool,
    ) -> None:
        self.getter = getter
        self.url = url
        self.headers = headers
        self.offset = offset
        self.put = put
        self.token = token
        self.ranged = ranged
        self.conn: http.client.HTTPConnection | None = None
        self.aborted = False
        #: The consumer said stop (or failed, with ``error``): read no further.
        self.stopped = False
        self.error: Exception | None = None
        #: The offset up to which ``accept`` took the body.
        self.accepted = offset
        #: Pieces sent but not yet taken: the thread waits when all are out, so at most
        #: IN_FLIGHT MiB sit between the socket and ``accept``.
        self.slots = threading.Semaphore(IN_FLIGHT)
        self._lock = threading.Lock()

    async def hand_over(
        self, receive: trio.MemoryReceiveChannel[tuple[int, bytes]], accept: Accept
    ) -> None:
        """In the trio thread: give each received piece to ``accept``, in order, while
        the worker thread goes on reading (no round trip per piece)."""
        async with receive:
            async for pos, data in receive:
                try:
                    if self.stopped:
                        continue
                    if await accept(pos, data):
                        self.accepted = pos + len(data)
                    else:
                        self.stopped = True
                except Exception as exc:  # get_into raises it; the thread stops
                    self.error = exc
                    self.stopped = True
                finally:
                    self.slots.release()

    def abort(self) -> None:
        """Wake the thread from its socket wait (called when the caller is cancelled)."""
        with self._lock:
            self.aborted = True
        conn = self.conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> int | Declined:
        if self.aborted:
            raise errors.Unavailable("download cancelled")
        return self._get()

    def _get(self) -> int | Declined:
        parts = urlsplit(self.url)
        scheme = parts.scheme or "http"
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        what = f"GET {parts.path}"
        conn = self.getter.take(scheme, host, port)
        self.conn = conn
        reusable = False
        try:
            reused = conn.sock is not None
            try:
                response = self._send(conn, target)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if not reused or self.aborted:
                    raise
                # A pooled connection the server had closed: one fresh try.
                conn.close()
                conn = self.getter.take(scheme, host, port)
                self.conn = conn
                response = self._send(conn, target)
            expected = 206 if self.ranged else 200
            if response.status != expected:
                if self.ranged and response.status == 200:
                    raise errors.ProtocolError("server ignored a byte range")
                response.close()
                return Declined(response.status)
            end = self._copy(response)
            # read1 leaves a finished body open; closing it readies the connection.
            complete = response.length == 0 or (response.length is None and response.isclosed())
            response.close()
            reusable = complete and not response.will_close and not self.aborted
            return end
        except TimeoutError:
            raise errors.Timeout(
                f"{what}: no data from server for {self.getter.read_timeout:g} s"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            if self.aborted:
                raise errors.Unavailable(f"{what}: cancelled") from None
            raise errors.Unavailable(f"{what}: body interrupted: {exc!r}") from None
        finally:
            self.conn = None
            if reusable:
                self.getter.give_back(scheme, host, port, conn)
            else:
                conn.close()

    def _send(self, conn: http.client.HTTPConnection, target: str) -> http.client.HTTPResponse:
        if conn.sock is None:
            conn.connect()
        assert conn.sock is not None
        if self.aborted:  # cancelled while connecting: abort() found no socket to shut
            raise errors.Unavailable("download cancelled")
        conn.sock.settimeout(self.getter.read_timeout)
        conn.request("GET", target, headers=self.headers)
        return conn.getresponse()

    def _copy(self, response: http.client.HTTPResponse) -> int:
        pos = self.offset
        pending: list[bytes] = []
        pending_len = 0
        last_flush = time.monotonic()
        stopped = False
        try:
            while not self.aborted:
                # Pieces end on MiB boundaries of the file, so a reader's request
                # (aligned by the kernel) lies within one piece and is served uncopied.
                boundary = (pos // FLUSH_BYTES + 1) * FLUSH_BYTES
                piece = response.read1(boundary - pos - pending_len)
                if not piece:
                    break
                pending.append(piece)
                pending_len += len(piece)
                now = time.monotonic()
                if (
                    pos + pending_len >= boundary
                    or now - last_flush >= FLUSH_SECONDS
                    or pos == self.offset
                ):
                    pos, more = self._hand_over(pending, pos)
                    pending, pending_len, last_flush = [], 0, now
                    if not more:
                        stopped = True
                        break
        finally:
            if pending:
                pos, _ = self._hand_over(pending, pos)
        if self.aborted:
            raise errors.Unavailable("download cancelled")
        if response.length and not stopped:  # the server closed before its Content-Length
            raise errors.Unavailable(
                f"body interrupted at {pos - self.offset} bytes, {response.length} short"
            )
        return pos

    def _hand_over(self, pieces: list[bytes], pos: int) -> tuple[int, bool]:
        """Send the gathered bytes to the trio thread, first waiting for a free slot
        (bounded by the read time-out); the position after them, and whether to go on."""
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        deadline = time.monotonic() + self.getter.read_timeout
        while not self.slots.acquire(timeout=0.05):
            if self.aborted or self.stopped:
                return pos, False
            if time.monotonic() > deadline:
                raise TimeoutError  # the consumer is stuck: reported as a time-out
        if self.stopped:
            self.slots.release()
            return pos, False
        try:
            self.token.run_sync_soon(self.put, (pos, data))
        except trio.RunFinishedError:  # the mount is going away
            self.aborted = True
            return pos, False
        return pos + len(data), not self.aborted


def tls_context(verify: ssl.SSLContext | bool, cert_file: str | None) -> ssl.SSLContext:
    """The TLS settings the async client uses, for the worker threads' connections."""
    import httpx2

    ctx = httpx2.create_ssl_context(verify=verify, trust_env=False)
    if cert_file:
        ctx.load_cert_chain(cert_file)
    return ctx
