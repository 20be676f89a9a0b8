"""Who the emulator thinks is calling (``identify``), in-process.

Static tokens (Authorization or X-CADC-DelegationToken), access tokens issued by the
OIDC endpoint (signed, expiring), and client certificates as the TLS server reports them
through the ASGI TLS extension. ``/_emulator/stats`` needs the primary user, so its
status tells the identity apart: 200 alice, 403 anonymous or another user, 401 refused.
"""

from __future__ import annotations

import time
from typing import Any

import httpx2
import pytest
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from canfarfs.emulator.app import Emulator
from canfarfs.emulator.auth import cert_user_name, identify, sign_access_token
from canfarfs.emulator.errors import Fault
from canfarfs.emulator.oidc import TokenIssuer
from tests.emulator_util import BASE, BOB_TOKEN, TOKEN, USER

STATS = "/_emulator/stats"


def with_client_cert(app: ASGIApp, subject: str) -> ASGIApp:
    """What the TLS server does for a verified client certificate."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        scope = {**scope, "extensions": {"tls": {"client_cert_name": subject}}}
        await app(scope, receive, send)

    return wrapped


def anon_client(app: ASGIApp) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE)


def issued(emulator: Emulator, **claims: Any) -> str:
    """An access token as the token endpoint would sign it, with ``claims`` overriding."""
    key = TokenIssuer(emulator.config, emulator.store).key
    base = {"sub": USER, "exp": time.time() + 60, "iat": int(time.time())}
    return sign_access_token(key, {**base, **claims})


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 403),
        ({"Authorization": f"Bearer {TOKEN}"}, 200),
        ({"X-CADC-DelegationToken": TOKEN}, 200),
        ({"Authorization": f"Bearer {TOKEN}", "X-CADC-DelegationToken": TOKEN}, 200),  # as vos
        ({"Authorization": f"Bearer {BOB_TOKEN}"}, 403),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"X-CADC-DelegationToken": "wrong"}, 401),
        ({"Authorization": "Basic YWxpY2U6eA=="}, 401),
    ],
)
async def test_static_tokens(emulator: Emulator, headers: dict[str, str], status: int) -> None:
    async with anon_client(emulator.app) as c:
        r = await c.get(STATS, headers=headers)
    assert r.status_code == status, r.text
    if status == 401:
        assert r.text.startswith("NotAuthenticated")


@pytest.mark.parametrize(
    ("subject", "status"),
    [
        ("CN=alice_abc123,OU=cadc,O=hia,C=ca", 200),
        ("CN=bob_x,OU=cadc,O=hia,C=ca", 403),
        ("CN=mallory_x,OU=cadc,O=hia,C=ca", 401),
    ],
)
async def test_client_certificate(emulator: Emulator, subject: str, status: int) -> None:
    async with anon_client(with_client_cert(emulator.app, subject)) as c:
        r = await c.get(STATS)
    assert r.status_code == status, r.text


async def test_token_wins_over_certificate(emulator: Emulator) -> None:
    app = with_client_cert(emulator.app, "CN=alice_abc,OU=cadc,O=hia,C=ca")
    async with anon_client(app) as c:
        assert (await c.get(STATS, headers={"Authorization": "Bearer x"})).status_code == 401
        assert (
            await c.get(STATS, headers={"Authorization": f"Bearer {BOB_TOKEN}"})
        ).status_code == 403


def test_cert_user_name() -> None:
    assert cert_user_name("CN=alice_abc,OU=cadc,O=hia,C=ca") == "alice"
    assert cert_user_name("CN=proxy,CN=bob_1,OU=cadc,O=hia,C=ca") == "proxy"
    assert cert_user_name("O=hia,C=ca") is None


async def test_issued_access_token(emulator: Emulator) -> None:
    async with anon_client(emulator.app) as c:
        ok = await c.get(STATS, headers={"Authorization": f"Bearer {issued(emulator)}"})
        assert ok.status_code == 200
        bob = issued(emulator, sub="bob")
        assert (await c.get(STATS, headers={"X-CADC-DelegationToken": bob})).status_code == 403


async def test_expired_access_token_says_so(emulator: Emulator) -> None:
    token = issued(emulator, exp=1_700_000_000)
    async with anon_client(emulator.app) as c:
        r = await c.get(STATS, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.text == "NotAuthenticated: access token expired at 2023-11-14T22:13:20Z\n"


async def test_forged_or_foreign_access_tokens(emulator: Emulator) -> None:
    good = issued(emulator)
    head, body, _ = good.split(".")
    forged = sign_access_token(b"not the key", {"sub": USER, "exp": time.time() + 60})
    unknown = issued(emulator, sub="mallory")
    async with anon_client(emulator.app) as c:
        for token, text in [
            (f"{head}.{body}.AAAA", "invalid or expired credentials"),
            (forged, "invalid or expired credentials"),
            (unknown, "access token subject not known"),
        ]:
            r = await c.get(STATS, headers={"Authorization": f"Bearer {token}"})
            assert (r.status_code, r.text) == (401, f"NotAuthenticated: {text}\n")


def test_identify_signature(emulator: Emulator) -> None:
    """``identify(conn, config)``: None when anonymous, a User, or a 401 Fault."""
    conn = HTTPConnection({"type": "http", "headers": [], "path": "/"})
    assert identify(conn, emulator.config) is None
    conn = HTTPConnection(
        {"type": "http", "path": "/", "headers": [(b"authorization", f"Bearer {TOKEN}".encode())]}
    )
    user = identify(conn, emulator.config)
    assert user is not None
    assert user.name == USER
    conn = HTTPConnection({"type": "http", "path": "/", "headers": [(b"authorization", b"Bearer")]})
    with pytest.raises(Fault) as info:
        identify(conn, emulator.config)
    assert info.value.status == 401
