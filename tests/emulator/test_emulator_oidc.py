"""The OIDC-style token endpoint (refresh grant), in-process and with the real canfar client.

Until ``/oidc`` is routed by ``build_emulator`` the tests mount :func:`oidc_app` in front
of the emulator app themselves (:func:`with_oidc`), which is what the router does.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
import yaml
from starlette.types import ASGIApp, Receive, Scope, Send

from canfarfs.emulator.app import Emulator, build_emulator
from canfarfs.emulator.config import load_config
from canfarfs.emulator.oidc import OIDC_FILE, Grant, TokenIssuer, oidc_app, set_lifetimes
from canfarfs.emulator.server import serve_emulator
from tests.emulator_util import BASE, TOKEN, USER, clean_env

STATS = "/_emulator/stats"


def with_oidc(emulator: Emulator) -> ASGIApp:
    """The emulator app with :func:`oidc_app` mounted at ``/oidc``."""
    oidc = oidc_app(emulator.config, emulator.store)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and (path == "/oidc" or path.startswith("/oidc/")):
            await oidc({**scope, "root_path": scope.get("root_path", "") + "/oidc"}, receive, send)
        else:
            await emulator.app(scope, receive, send)

    return app


def read_grant(root: Path) -> Grant:
    data = json.loads((root / OIDC_FILE).read_text())
    return Grant(**data)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def refresh(
    c: httpx2.AsyncClient, grant: Grant, refresh_token: str | None = None, secret: str | None = None
) -> httpx2.Response:
    return await c.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token or grant.refresh_token},
        headers=basic(grant.client_id, secret or grant.client_secret),
    )


@pytest.fixture
async def oidc_client(emulator: Emulator) -> Any:
    app = with_oidc(emulator)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as c:
        yield c


async def test_discovery(oidc_client: httpx2.AsyncClient) -> None:
    r = await oidc_client.get("/oidc/.well-known/openid-configuration")
    assert r.status_code == 200
    doc = r.json()
    assert doc["issuer"] == f"{BASE}/oidc"
    assert doc["token_endpoint"] == f"{BASE}/oidc/token"
    assert "refresh_token" in doc["grant_types_supported"]
    assert "client_secret_basic" in doc["token_endpoint_auth_methods_supported"]


async def test_grant_file_is_private(emulator: Emulator, oidc_client: httpx2.AsyncClient) -> None:
    root = emulator.config.root
    for name in (OIDC_FILE, "oidc-signing.key"):
        assert stat.S_IMODE((root / name).stat().st_mode) == 0o600
    grant = read_grant(root)
    assert grant.user == USER
    assert grant.token_path == "/oidc/token"


async def test_refresh_rotates_and_issues_a_working_access_token(
    emulator: Emulator, oidc_client: httpx2.AsyncClient
) -> None:
    grant = read_grant(emulator.config.root)
    r = await refresh(oidc_client, grant)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "openid profile email offline_access"
    assert body["refresh_token"] != grant.refresh_token
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await oidc_client.get(STATS, headers=bearer)).status_code == 200
    info = await oidc_client.get("/oidc/userinfo", headers=bearer)
    assert info.json()["preferred_username"] == USER

    again = await refresh(oidc_client, grant)  # the old refresh token was rotated out
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    rotated = await refresh(oidc_client, grant, body["refresh_token"])
    assert rotated.status_code == 200


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"secret": "wrong"}, 401, "invalid_client"),
        ({"refresh_token": "unknown"}, 400, "invalid_grant"),
    ],
)
async def test_refresh_errors(
    emulator: Emulator,
    oidc_client: httpx2.AsyncClient,
    change: dict[str, str],
    status: int,
    error: str,
) -> None:
    r = await refresh(oidc_client, read_grant(emulator.config.root), **change)
    assert (r.status_code, r.json()["error"]) == (status, error)
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Basic")


async def test_malformed_requests(emulator: Emulator, oidc_client: httpx2.AsyncClient) -> None:
    grant = read_grant(emulator.config.root)
    auth = basic(grant.client_id, grant.client_secret)
    cases = [
        (
            {"grant_type": "refresh_token", "refresh_token": grant.refresh_token},
            {},
            401,
            "invalid_client",
        ),
        ({"grant_type": "password"}, auth, 400, "unsupported_grant_type"),
        ({"grant_type": "refresh_token"}, auth, 400, "invalid_request"),
    ]
    for data, headers, status, error in cases:
        r = await oidc_client.post("/oidc/token", data=data, headers=headers)
        assert (r.status_code, r.json()["error"]) == (status, error)
    json_body = await oidc_client.post("/oidc/token", json={"grant_type": "x"}, headers=auth)
    assert json_body.json()["error"] == "invalid_request"
    assert (await oidc_client.get("/oidc/token")).status_code == 405


async def test_client_secret_post_is_accepted(
    emulator: Emulator, oidc_client: httpx2.AsyncClient
) -> None:
    grant = read_grant(emulator.config.root)
    r = await oidc_client.post(
        "/oidc/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": grant.refresh_token,
            "client_id": grant.client_id,
            "client_secret": grant.client_secret,
        },
    )
    assert r.status_code == 200


async def test_lifetime_knob(emulator: Emulator, oidc_client: httpx2.AsyncClient) -> None:
    knob = "/oidc/_settings"
    assert (await oidc_client.post(knob, json={"access_token_lifetime": 2})).status_code == 403
    admin = {"Authorization": f"Bearer {TOKEN}"}
    bad = await oidc_client.post(knob, json={"access_token_lifetime": -1}, headers=admin)
    assert bad.status_code == 400
    r = await oidc_client.post(knob, json={"access_token_lifetime": 2}, headers=admin)
    assert r.json()["access_token_lifetime"] == 2
    token = await refresh(oidc_client, read_grant(emulator.config.root))
    assert token.json()["expires_in"] == 2


async def test_expired_refresh_token(emulator: Emulator, oidc_client: httpx2.AsyncClient) -> None:
    set_lifetimes(emulator.store, refresh=0.05)
    grant = TokenIssuer(emulator.config, emulator.store).new_grant()
    await trio.sleep(0.1)
    r = await refresh(oidc_client, grant)
    assert r.json() == {"error": "invalid_grant", "error_description": "refresh token expired"}


async def test_tokens_survive_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "emu"
    first = build_emulator(load_config(root, user=USER, token=TOKEN))
    app = with_oidc(first)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as c:
        body = (await refresh(c, read_grant(root))).json()
    first.close()

    second = build_emulator(load_config(root, user=USER, token=TOKEN))
    app = with_oidc(second)
    try:
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as c:
            bearer = {"Authorization": f"Bearer {body['access_token']}"}
            assert (await c.get(STATS, headers=bearer)).status_code == 200
            grant = read_grant(root)
            assert (await refresh(c, grant, body["refresh_token"])).status_code == 200
            # oidc.json held the rotated-out token: a usable one was written at start-up.
            assert (await refresh(c, read_grant(root))).status_code == 200
    finally:
        second.close()


# -- the real canfar client -------------------------------------------------------------

CANFAR_SCRIPT = """
import sys
from canfar.sessions import Session
try:
    Session().fetch()
except Exception as exc:  # the Skaha side may not answer yet; the refresh ran first
    print(type(exc).__name__, file=sys.stderr)
"""


def canfar_config(url: str, grant: Grant) -> dict[str, Any]:
    """A canfar v2 config: OIDC record with an expired access token (skaha-api.md §11)."""
    return {
        "version": 2,
        "active": {"authentication": "srcnet", "server": "local"},
        "authentication": {
            "srcnet": {
                "mode": "oidc",
                "idp": "srcnet",
                "endpoints": {
                    "discovery": url + grant.discovery_path,
                    "token": url + grant.token_path,
                },
                "client": {
                    "identity": grant.client_id,
                    "secret": grant.client_secret,
                    "secret_expires_at": 0,
                },
                "token": {
                    "access": "expired-access-token",
                    "refresh": grant.refresh_token,
                    "token_type": "Bearer",
                    "scope": "openid profile email offline_access",
                },
                "expiry": {"access": 1000.0},
            }
        },
        "servers": {
            "local": {
                "name": "local",
                "idp": "srcnet",
                "uri": "ivo://cadc.nrc.ca/skaha",
                "url": url + "/skaha",
                "version": "v1",
                "auths": ["oidc"],
            }
        },
    }


async def test_canfar_client_refreshes_against_the_emulator(
    emulator: Emulator, tmp_path: Path
) -> None:
    served = dataclasses.replace(emulator, app=with_oidc(emulator))
    grant = read_grant(emulator.config.root)
    home = tmp_path / "home"
    config_file = home / ".canfar" / "config.yaml"
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_emulator, served)
        config_file.parent.mkdir(parents=True, mode=0o700)
        config_file.write_text(yaml.safe_dump(canfar_config(url, grant)))
        os.chmod(config_file, 0o600)
        with trio.fail_after(30):
            proc = await trio.run_process(
                [sys.executable, "-c", CANFAR_SCRIPT],
                env=clean_env(home),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        saved = yaml.safe_load(config_file.read_text())["authentication"]["srcnet"]
        token = saved["token"]
        assert token["access"] != "expired-access-token", proc.stderr.decode()[-2000:]
        assert token["refresh"] != grant.refresh_token  # rotated
        assert saved["expiry"]["access"] > time.time() + 200
        assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
        async with httpx2.AsyncClient(base_url=url, timeout=10) as c:
            bearer = {"Authorization": f"Bearer {token['access']}"}
            stats = await c.get(STATS, headers=bearer)
            assert stats.status_code == 200
            assert stats.json()["by_method"].get("GET", 0) >= 1  # canfar's request after refresh
        nursery.cancel_scope.cancel()
