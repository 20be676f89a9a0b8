"""Serve the emulator over a socket with Hypercorn's trio protocol handling.

Hypercorn's own ``serve`` builds its listeners internally and does not tell the app
which client certificate a TLS connection presented, so this module runs the accept
loop itself: it hands each connection to a small subclass of Hypercorn's trio
``TCPServer`` that finishes the TLS handshake first and then adds the ASGI TLS
extension (``scope["extensions"]["tls"]``, with ``client_cert_name`` as an RFC 4514
string) to every request of that connection. HTTP parsing, keep-alive and timeouts stay
Hypercorn's. A TLS ClientHello sent to the plain-HTTP port is refused at once (h11
rejects a request line starting with byte 0x16 and Hypercorn answers 400 and closes).
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import trio
from cryptography import x509
from hypercorn.config import Config
from hypercorn.events import Closed, RawData
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, Framework
from hypercorn.utils import wrap_app
from starlette.types import ASGIApp

from canfarfs.emulator.app import Emulator, build_emulator
from canfarfs.emulator.config import EmulatorConfig
from canfarfs.emulator.tls import ServerTLS, ensure_server_tls

log = logging.getLogger(__name__)

#: Seconds a client gets to complete the TLS handshake.
HANDSHAKE_TIMEOUT = 10.0
#: Bytes asked of the socket per read. Hypercorn reads 64 KiB; each read becomes one h11
#: event, one ASGI message and one channel hand-off, about 200 µs of Python, which capped
#: uploads near 200 MB/s. 1 MiB reads cut that per-byte cost sixteenfold (h11 hands a
#: Content-Length body through in whatever pieces arrive, so nothing else changes).
RECV_BYTES = 1 << 20
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def _bind(host: str, port: int) -> socket.socket:
    """Bind first, so ``--port 0`` is resolved before we print the URL."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def hypercorn_config() -> Config:
    cfg = Config()
    cfg.include_server_header = False  # vos refuses some Server header versions (§10.1)
    cfg.accesslog = None
    cfg.keep_alive_timeout = 75
    cfg.h11_max_incomplete_size = 64 * 1024
    cfg.ssl_handshake_timeout = HANDSHAKE_TIMEOUT
    return cfg


class _TLSInfo:
    """What the ASGI TLS extension reports: fixed per listener, peer facts per connection."""

    def __init__(self, server_pem: str, context: ssl.SSLContext) -> None:
        self.server_pem = server_pem
        self.suites = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}

    def extension(self, stream: trio.SSLStream[Any]) -> dict[str, Any]:
        der: bytes | None = stream.getpeercert(binary_form=True)
        chain: list[str] = []
        name: str | None = None
        if der:
            cert = x509.load_der_x509_certificate(der)
            chain = [ssl.DER_cert_to_PEM_cert(der)]
            name = cert.subject.rfc4514_string()
        cipher = stream.cipher()
        return {
            "server_cert": self.server_pem,
            "client_cert_chain": chain,
            "client_cert_name": name,
            "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(stream.version() or ""),
            "cipher_suite": self.suites.get(cipher[0]) if cipher else None,
        }


class _WithTLSScope:
    """Hypercorn app wrapper that adds one connection's TLS extension to each scope."""

    def __init__(self, app: Any, tls: dict[str, Any]) -> None:
        self.app = app
        self.tls = tls

    async def __call__(
        self, scope: Any, receive: Any, send: Any, sync_spawn: Any, call_soon: Any
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            scope.setdefault("extensions", {})["tls"] = dict(self.tls)
        await self.app(scope, receive, send, sync_spawn, call_soon)


#: ASGI scope extension: an async callable that cuts this request's connection at once,
#: without an answer (the fault injector's outage). Absent in-process (no socket).
ABORT_EXTENSION = "canfarfs.abort"


class _WithAbort:
    """Hypercorn app wrapper that lets the app cut its own connection (see above)."""

    def __init__(self, app: Any, abort: Callable[[], Any]) -> None:
        self.app = app
        self.abort = abort

    async def __call__(
        self, scope: Any, receive: Any, send: Any, sync_spawn: Any, call_soon: Any
    ) -> None:
        if scope["type"] == "http":
            scope.setdefault("extensions", {})[ABORT_EXTENSION] = self.abort
        await self.app(scope, receive, send, sync_spawn, call_soon)


class _Connection(TCPServer):
    """Hypercorn's connection handler, with the TLS handshake done first."""

    def __init__(self, *args: Any, tls_info: _TLSInfo | None = None) -> None:
        super().__init__(*args)
        self.tls_info = tls_info

    async def run(self) -> None:
        if isinstance(self.stream, trio.SSLStream) and self.tls_info is not None:
            try:
                with trio.fail_after(HANDSHAKE_TIMEOUT):
                    await self.stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError) as exc:
                log.info("TLS handshake failed: %s", _reason(exc))
                await _send_alert(self.stream)
                await trio.aclose_forcefully(self.stream)
                return
            self.app = _WithTLSScope(self.app, self.tls_info.extension(self.stream))
        self.app = _WithAbort(self.app, self._abort)
        await super().run()

    async def _abort(self) -> None:
        await trio.aclose_forcefully(self.stream)

    async def _read_data(self) -> None:
        """Hypercorn's read loop, with :data:`RECV_BYTES` per read instead of 64 KiB."""
        while True:
            try:
                with trio.fail_after(self.config.read_timeout or math.inf):
                    data = await self.stream.receive_some(RECV_BYTES)
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                break
            await self.protocol.handle(RawData(bytes(data)))
            if data == b"":
                break
        await self.protocol.handle(Closed())


async def _send_alert(stream: trio.SSLStream[Any]) -> None:
    """Send the TLS alert OpenSSL wrote for a failed handshake, so the client learns why.

    trio marks the stream broken without flushing it; without this the client sees a
    bare EOF instead of e.g. ``sslv3 alert certificate expired``. Best effort: it
    reads trio's outgoing memory BIO (private) and gives up quietly if that changes.
    """
    outgoing = getattr(stream, "_outgoing", None)
    data = outgoing.read() if isinstance(outgoing, ssl.MemoryBIO) else b""
    if data:
        with (
            trio.move_on_after(1),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await stream.transport_stream.send_all(data)


def _reason(exc: BaseException) -> str:
    """The SSL library's reason for a failed handshake (never includes key material)."""
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"client certificate refused: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        return cause.reason or str(cause)
    return str(cause or exc) or type(exc).__name__


def _tls_setup(
    emulator: Emulator, host: str, tls: bool | ServerTLS
) -> tuple[ssl.SSLContext, _TLSInfo] | None:
    """Certificates (generated or reused) and the server context; None for plain HTTP."""
    if tls is False:
        return None
    files = ensure_server_tls(emulator.config.root, [host]) if tls is True else tls
    ctx = files.server_context()
    return ctx, _TLSInfo(files.cert.read_text(), ctx)


async def _serve_app(
    app: ASGIApp,
    listener: trio.abc.Listener[Any],
    tls_info: _TLSInfo | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Hypercorn's trio worker loop for one listener: lifespan, then connections."""
    cfg = hypercorn_config()
    wrapped = wrap_app(cast("Framework", app), cfg.wsgi_max_body_size, "asgi")
    state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, cfg, state)
    async with trio.open_nursery() as nursery:
        await nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        handler = partial(
            _Connection,
            wrapped,
            cfg,
            WorkerContext(None),
            ConnectionState(state.copy()),
            tls_info=tls_info,
        )
        await nursery.start(trio.serve_listeners, handler, [listener])
        task_status.started()


async def serve_emulator(
    emulator: Emulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tls: bool | ServerTLS = False,
    ready: Callable[[str], None] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; report the base URL through ``task_status`` and ``ready``.

    ``tls=True`` serves HTTPS with the certificates under ``<root>/tls`` (generated or
    reused, see :mod:`canfarfs.emulator.tls`) and accepts client certificates signed
    by the emulator CA.
    """
    setup = await trio.to_thread.run_sync(_tls_setup, emulator, host, tls)
    sock = _bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if setup else 'http'}://{shown}:{sock.getsockname()[1]}"
    try:
        listener: trio.abc.Listener[Any] = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        if setup is not None:
            listener = trio.SSLListener(listener, setup[0], https_compatible=True)
        async with trio.open_nursery() as nursery:
            for service in emulator.services:
                nursery.start_soon(service.run)
            await nursery.start(_serve_app, emulator.app, listener, setup and setup[1])
            if ready is not None:
                ready(url)
            task_status.started(url)
    finally:
        sock.close()


def run_emulator_command(config: EmulatorConfig, host: str, port: int, *, tls: bool = False) -> int:
    """The ``canfarfs emulator`` command: print the URL, serve until SIGINT/SIGTERM."""
    emulator = build_emulator(config)

    def ready(url: str) -> None:
        print(url, flush=True)
        if config.token_file is not None:
            print(f"token written to {config.token_file}", flush=True)
        else:
            print("token: as given", flush=True)
        if tls:
            ca = (config.root / "tls" / "ca.pem").resolve()
            print(f"TLS: clients trust {ca}", flush=True)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    partial(serve_emulator, emulator, host, port, tls=tls, ready=ready)
                )
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    finally:
        emulator.close()
    print("emulator stopped", file=sys.stderr, flush=True)
    return 0
