"""Serve the emulator over a socket with Hypercorn's trio worker."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from canfarfs.emulator.app import Emulator, build_emulator
from canfarfs.emulator.config import EmulatorConfig

log = logging.getLogger(__name__)


def _bind(host: str, port: int) -> socket.socket:
    """Bind first, so ``--port 0`` is resolved before we print the URL."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def hypercorn_config(sock: socket.socket, tls: tuple[Path, Path] | None = None) -> Config:
    cfg = Config()
    cfg.include_server_header = False  # vos refuses some Server header versions (§10.1)
    cfg.accesslog = None
    cfg.keep_alive_timeout = 75
    cfg.h11_max_incomplete_size = 64 * 1024
    host, port = sock.getsockname()[:2]
    cfg.bind = [f"fd://{sock.fileno()}"]
    if tls is not None:
        cfg.certfile, cfg.keyfile = str(tls[0]), str(tls[1])
    return cfg


async def serve_emulator(
    emulator: Emulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ready: Callable[[str], None] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; report the base URL through ``task_status`` and ``ready``."""
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound_port}"
    cfg = hypercorn_config(sock)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        for service in emulator.services:
            nursery.start_soon(service.run)

        async def _serve(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            await serve(emulator.app, cfg, shutdown_trigger=shutdown.wait,  # type: ignore[arg-type]
                        task_status=task_status)

        await nursery.start(_serve)
        if ready is not None:
            ready(url)
        task_status.started(url)
        try:
            await trio.sleep_forever()
        finally:
            shutdown.set()
            nursery.cancel_scope.cancel()
            sock.close()


def run_emulator_command(
    config: EmulatorConfig, host: str, port: int, *, tls: bool = False
) -> int:
    """The ``canfarfs emulator`` command: print the URL, serve until SIGINT/SIGTERM."""
    emulator = build_emulator(config)

    def ready(url: str) -> None:
        print(url, flush=True)
        if config.token_file is not None:
            print(f"token written to {config.token_file}", flush=True)
        else:
            print("token: as given", flush=True)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: serve_emulator(emulator, host, port, ready=ready))
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    finally:
        emulator.close()
    print("emulator stopped", file=sys.stderr, flush=True)
    return 0
