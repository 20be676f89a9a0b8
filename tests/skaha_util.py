"""Helpers for Skaha tests: the service run for a block, the calls tests make, clients."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx2
import trio

from canfarfs.emulator.app import Emulator
from canfarfs.emulator.skaha import SkahaService
from canfarfs.net import HTTP, Credentials, RetryPolicy, make_client
from tests.emulator_util import TOKEN

V1 = "/skaha/v1/session"
TERMINAL = "images.canfar.net/skaha/terminal:1.1.1"
ASTROML = "images.canfar.net/skaha/astroml:latest"


def service(emulator: Emulator) -> SkahaService:
    return next(s for s in emulator.services if isinstance(s, SkahaService))


@asynccontextmanager
async def running(emulator: Emulator) -> AsyncIterator[SkahaService]:
    """Run the service's background work (what the socket server does) for a block."""
    svc = service(emulator)
    svc.settings.pending_seconds = 0.3
    svc.settings.tick = 0.05
    svc.settings.kill_grace = 0.5
    async with trio.open_nursery() as nursery:
        nursery.start_soon(svc.run)
        yield svc
        nursery.cancel_scope.cancel()


async def create(
    client: httpx2.AsyncClient, name: str = "test", image: str = TERMINAL, **params: str | list[str]
) -> str:
    items: list[tuple[str, str]] = [("name", name), ("image", image)]
    for key, value in params.items():
        items += [(key, v) for v in ([value] if isinstance(value, str) else value)]
    r = await client.post(V1, params=tuple(items))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert re.fullmatch(r"[a-z][a-z0-9]{7}\n", r.text)
    return r.text.strip()


async def info(client: httpx2.AsyncClient, sid: str) -> dict[str, object]:
    r = await client.get(f"{V1}/{sid}")
    assert r.status_code == 200, r.text
    data: dict[str, object] = r.json()
    return data


async def until(check: Callable[[], Awaitable[object]], within: float = 10) -> None:
    """Poll ``check`` every 50 ms until it is truthy; fail after ``within`` seconds."""
    with trio.fail_after(within):
        while True:
            if await check():
                return
            await trio.sleep(0.05)


async def wait_status(client: httpx2.AsyncClient, sid: str, *wanted: str) -> dict[str, object]:
    async def reached() -> bool:
        return (await info(client, sid))["status"] in wanted

    await until(reached)
    return await info(client, sid)


async def gone(client: httpx2.AsyncClient, sid: str) -> bool:
    return (await client.get(f"{V1}/{sid}")).status_code == 404


async def logs(client: httpx2.AsyncClient, sid: str) -> str:
    r = await client.get(f"{V1}/{sid}", params={"view": "logs"})
    assert r.status_code == 200
    return r.text


async def events(client: httpx2.AsyncClient, sid: str) -> list[list[str]]:
    """Events as the canfar CLI reads them: rows split on runs of two or more spaces."""
    r = await client.get(f"{V1}/{sid}", params={"view": "events"})
    assert r.status_code == 200
    lines = r.text.splitlines()
    rows = [re.split(r" {2,}", line) for line in lines[1:]]
    assert all(len(row) == 5 for row in rows), r.text
    return rows


PRIVATE = "images.canfar.net/your/private-image:latest"
SECRET = "s3cret-VALUE-42"


def make_http(emulator: Emulator, token: str = TOKEN) -> HTTP:
    """HTTP into the emulator's ASGI app; retries are instant."""

    async def no_wait(_: float) -> None:
        await trio.lowlevel.checkpoint()

    return HTTP(
        make_client(transport=httpx2.ASGITransport(app=emulator.app)),
        Credentials(token=token),
        retry=RetryPolicy(attempts=2, sleep=no_wait),
    )
