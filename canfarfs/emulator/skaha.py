"""Skaha v1 emulator (placeholder: being written; see docs/emulator.md)."""

from __future__ import annotations

from dataclasses import dataclass

import trio
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from canfarfs.emulator.config import EmulatorConfig
from canfarfs.emulator.store import Store


@dataclass
class SkahaService:
    app: ASGIApp

    async def run(self) -> None:
        """Background work (headless session processes); runs until cancelled."""
        await trio.sleep_forever()


def build_skaha(config: EmulatorConfig, store: Store) -> SkahaService:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("not found\n", 404)(scope, receive, send)

    return SkahaService(app=app)
