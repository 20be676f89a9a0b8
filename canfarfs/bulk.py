"""Large download bodies written straight into a file by worker threads.

The async client (httpx2 over h11) costs the trio loop an h11 event, a buffer copy and
a few task switches per received piece: a 512 MiB body took ~1.45 s of the loop's time
(370 MB/s), and the same loop must also answer FUSE. Here a worker thread holds a
blocking ``http.client`` connection and moves each piece with ``read1`` and
``os.pwrite``; both release the GIL, so the copying is the kernel's and the loop only
hears, once per MiB, which bytes have landed (docs/performance.md has the figures).

Only the happy path lives here: a status other than the expected one is handed back to
the caller, which asks again through the async client to get the proper error. Every
socket wait is bounded by the read time-out; cancelling the caller shuts the socket so
the thread returns at once. Idle keep-alive connections are pooled per host.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import trio

from canfarfs import errors

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Bytes gathered before they are written and announced (fewer, larger pwrites).
FLUSH_BYTES = 1 * MiB
#: ...unless this long has passed since the last announcement (a slow link).
FLUSH_SECONDS = 0.02
#: Idle connections older than this are not reused (servers close them first).
KEEPALIVE_SECONDS = 20.0
IDLE_PER_HOST = 8

#: Reports [start, end) of the file as written; called in the trio thread.
OnFilled = Callable[[int, int], None]


@dataclass
class Declined:
    """The server answered something other than the bytes asked for."""

    status: int


@dataclass
class _Conn:
    conn: http.client.HTTPConnection
    idle_since: float


class BulkGetter:
    """GETs whose bodies go into a file descriptor, one worker thread per body."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None, connect_timeout: float,
                 read_timeout: float, threads: int = 8) -> None:
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.limiter = trio.CapacityLimiter(threads)
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._lock = threading.Lock()

    async def get_into(self, url: str, headers: Mapping[str, str], fd: int, offset: int,
                       on_filled: OnFilled, *, ranged: bool,
                       stop: Callable[[], bool] = lambda: False) -> int | Declined:
        """GET ``url`` and write its body into ``fd`` from ``offset``.

        Returns the offset reached (the caller checks it against what it expected) or
        :class:`Declined`. ``on_filled`` hears of every written piece, also before an
        error is raised, so a caller can resume. ``stop`` (polled per piece) ends the copy
        early, e.g. once the cache file is dropped. Raises Timeout, Unavailable or
        ProtocolError; cancelling the caller shuts the socket.
        """
        job = _Job(self, url, dict(headers), os.dup(fd), offset, on_filled,
                   trio.lowlevel.current_trio_token(), ranged, stop)
        try:
            # Abandoned on cancel: the thread writes only through its own duplicate of
            # ``fd`` and returns as soon as its socket is shut.
            return await trio.to_thread.run_sync(job.run, limiter=self.limiter,
                                                 abandon_on_cancel=True)
        except trio.Cancelled:
            job.abort()
            raise

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
            return http.client.HTTPSConnection(host, port, timeout=self.connect_timeout,
                                               context=self.ssl_context)
        return http.client.HTTPConnection(host, port, timeout=self.connect_timeout)

    def give_back(self, scheme: str, host: str, port: int,
                  conn: http.client.HTTPConnection) -> None:
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

    def __init__(self, getter: BulkGetter, url: str, headers: dict[str, str], fd: int,
                 offset: int, on_filled: OnFilled, token: trio.lowlevel.TrioToken,
                 ranged: bool, stop: Callable[[], bool]) -> None:
        self.getter = getter
        self.url = url
        self.headers = headers
        self.fd = fd
        self.offset = offset
        self.on_filled = on_filled
        self.token = token
        self.ranged = ranged
        self.stop = stop
        self.conn: http.client.HTTPConnection | None = None
        self.aborted = False
        self._started = False
        self._lock = threading.Lock()

    def abort(self) -> None:
        """Wake the thread from its socket wait (called when the caller is cancelled).

        If the thread has not started, it never will use ``fd``: it is closed here."""
        with self._lock:
            self.aborted = True
            if not self._started:
                os.close(self.fd)
                return
        conn = self.conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> int | Declined:
        with self._lock:
            if self.aborted:  # abort() closed fd already
                raise errors.Unavailable("download cancelled")
            self._started = True
        try:
            return self._get()
        finally:
            os.close(self.fd)

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
                f"{what}: no data from server for {self.getter.read_timeout:g} s") from None
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
                if self.stop():
                    stopped = True
                    break
                piece = response.read1(FLUSH_BYTES)
                if not piece:
                    break
                pending.append(piece)
                pending_len += len(piece)
                now = time.monotonic()
                if pending_len >= FLUSH_BYTES or now - last_flush >= FLUSH_SECONDS \
                        or pos == self.offset:
                    pos = self._flush(pending, pos)
                    pending, pending_len, last_flush = [], 0, now
        finally:
            if pending:
                pos = self._flush(pending, pos)
        if self.aborted:
            raise errors.Unavailable("download cancelled")
        if response.length and not stopped:  # the server closed before its Content-Length
            raise errors.Unavailable(
                f"body interrupted at {pos - self.offset} bytes, {response.length} short")
        return pos

    def _flush(self, pieces: list[bytes], pos: int) -> int:
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        os.pwrite(self.fd, data, pos)
        end = pos + len(data)
        with contextlib.suppress(trio.RunFinishedError):  # the mount is going away
            self.token.run_sync_soon(self.on_filled, pos, end)
        return end


def tls_context(verify: ssl.SSLContext | bool, cert_file: str | None) -> ssl.SSLContext:
    """The TLS settings the async client uses, for the worker threads' connections."""
    import httpx2

    ctx = httpx2.create_ssl_context(verify=verify, trust_env=False)
    if cert_file:
        ctx.load_cert_chain(cert_file)
    return ctx
