"""The emulator as one ASGI app: arc, vault (+ minoc), skaha, registry, control knobs.

Servable three ways: over a socket (:mod:`canfarfs.emulator.server`), in-process through
``httpx2.ASGITransport`` (tests), and inside the mount daemon (``mount --local``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from canfarfs.emulator.config import EmulatorConfig
from canfarfs.emulator.faults import FaultInjector
from canfarfs.emulator.store import Store


@dataclass
class Emulator:
    """The assembled app and the state it owns (closed with :meth:`close`)."""

    config: EmulatorConfig
    store: Store
    faults: FaultInjector
    app: ASGIApp
    #: Background work (session processes) needs a nursery; set by whoever serves the app.
    services: list[Any]

    def close(self) -> None:
        self.store.close()


class _Router:
    """Dispatch on the first path segment; everything else is the services' business."""

    def __init__(self, routes: dict[str, ASGIApp], fallback: ASGIApp) -> None:
        self.routes = routes
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        first = path.lstrip("/").split("/", 1)[0]
        app = self.routes.get(first)
        if app is None:
            await self.fallback(scope, receive, send)
            return
        # ASGI: ``path`` stays whole and ``root_path`` names the mount prefix.
        child = dict(scope)
        child["root_path"] = scope.get("root_path", "") + "/" + first
        await app(child, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    response = PlainTextResponse("not found\n", 404)
    await response(scope, receive, send)


def registry_app(config: EmulatorConfig) -> ASGIApp:
    """``/reg/resource-caps``: resource IDs to capabilities URLs, as the CADC registry."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.url.path.rstrip("/") != "/reg/resource-caps":
            await _not_found(scope, receive, send)
            return
        base = str(request.base_url).rstrip("/")
        if base.endswith("/reg"):
            base = base[: -len("/reg")]
        lines = [
            "# canfarfs emulator registry",
            f"ivo://cadc.nrc.ca/arc = {base}/arc/capabilities",
            f"ivo://cadc.nrc.ca/vault = {base}/vault/capabilities",
            f"ivo://cadc.nrc.ca/skaha = {base}/skaha/capabilities",
        ]
        response: Response = PlainTextResponse("\n".join(lines) + "\n")
        await response(scope, receive, send)

    return app


def build_emulator(config: EmulatorConfig) -> Emulator:
    """Open the store under ``config.root`` and assemble every service."""
    from canfarfs.emulator.control import control_app
    from canfarfs.emulator.oidc import oidc_app
    from canfarfs.emulator.skaha import build_skaha
    from canfarfs.emulator.vospace_http import build_vospace

    store = Store(config.root)
    faults = FaultInjector()
    arc = build_vospace("arc", config, store)
    vault = build_vospace("vault", config, store)
    skaha = build_skaha(config, store)
    routes: dict[str, ASGIApp] = {
        "arc": arc.app,
        "vault": vault.app,
        "minoc": vault.minoc_app,
        "skaha": skaha.app,
        "reg": registry_app(config),
        "_emulator": control_app(config, faults),
        "oidc": oidc_app(config, store),
    }
    app = faults.wrap(_Router(routes, _not_found))
    return Emulator(config=config, store=store, faults=faults, app=app, services=[skaha])
