"""The storage core of a mount (``canfarfs.fs.storage.Storage``) on the in-process
emulator, without FUSE: what tests/core's ``make_storage`` and ``storage`` fixtures give."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import trio

from canfarfs.emulator.app import Emulator
from canfarfs.fs.storage import Storage, StorageConfig
from canfarfs.net import HTTP, Credentials, RetryPolicy, Timeouts
from canfarfs.vospace.client import VOSpaceClient
from tests.emulator_util import BASE, TOKEN

#: ``async with make_storage(**config) as storage`` (the fixture's type).
MakeStorage = Callable[..., AbstractAsyncContextManager[Storage]]


@asynccontextmanager
async def open_storage(
    emulator: Emulator, cache_dir: Path, mount_timeout: float = 30.0, **config: Any
) -> AsyncIterator[Storage]:
    """arc and vault as alice, as a mount's storage core sees them. ``mount_timeout`` is the
    mount's ``--timeout``, applied as the daemon applies it (canfarfs/daemon.py), but
    in process: the bound on whole operations holds, a silence on the wire cannot
    happen. ``config`` is StorageConfig's (``read_only``, ``meta_ttl``, ...)."""
    timeouts = Timeouts(connect=mount_timeout, read=mount_timeout, operation=2 * mount_timeout)
    http = HTTP(
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=emulator.app)),
        Credentials(token=TOKEN),
        timeouts=timeouts,
        retry=RetryPolicy(base_delay=0.001, max_delay=0.05),  # Retry-After: 1 capped
    )
    config.setdefault("read_timeout", mount_timeout)
    clients = {s: VOSpaceClient(http, f"{BASE}/{s}", s) for s in ("arc", "vault")}
    try:
        async with trio.open_nursery() as nursery:
            yield Storage(
                clients, StorageConfig(cache_dir=cache_dir, user="alice", **config), nursery
            )
            nursery.cancel_scope.cancel()
    finally:
        await http.aclose()
