"""``/oidc``: an OIDC-style token endpoint (refresh grant) for testing credential refresh.

What the canfar client needs to refresh (skaha-api.md §10): discovery, and ``POST
/token`` with ``grant_type=refresh_token`` and client_secret_basic. Access tokens are
short-lived JWTs (:func:`canfarfs.emulator.auth.sign_access_token`) that the services
accept as bearer tokens; refresh tokens are opaque, rotate on every use and are kept
(hashed) in the emulator's SQLite database, as is the client. ``<root>/oidc.json``
(0600) holds a client id and secret and a currently valid refresh token for the
emulator's user: the starting point a test or a user copies into a canfar config.
Lifetimes are knobs: ``POST /oidc/_settings`` (primary user only) or
:func:`set_lifetimes`. See docs/emulator-auth.md.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from canfarfs.emulator.auth import SIGNING_KEY_FILE, identify, sign_access_token, signing_key
from canfarfs.emulator.config import EmulatorConfig, User
from canfarfs.emulator.errors import Fault
from canfarfs.emulator.store import Store

OIDC_FILE = "oidc.json"
SCOPE = "openid profile email offline_access"
DEFAULTS = {"access_token_lifetime": 300.0, "refresh_token_lifetime": 30 * 86400.0}

SCHEMA = """
CREATE TABLE IF NOT EXISTS oidc_clients (
    client_id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS oidc_refresh_tokens (
    token_sha256 TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user TEXT NOT NULL,
    scope TEXT NOT NULL,
    issued REAL NOT NULL,
    expires REAL NOT NULL,
    rotated REAL
);
CREATE TABLE IF NOT EXISTS oidc_settings (
    name TEXT PRIMARY KEY,
    value REAL NOT NULL
);
"""


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer: status, ``error`` code and a description."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> Response:
        headers = {"Cache-Control": "no-store"}
        if self.error == "invalid_client":
            headers["WWW-Authenticate"] = 'Basic realm="canfarfs-emulator"'
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, self.status, headers=headers)


@dataclass(frozen=True)
class Grant:
    """What a client needs to refresh: its credentials and a refresh token for ``user``."""

    client_id: str
    client_secret: str
    refresh_token: str
    user: str
    token_path: str = "/oidc/token"  # noqa: S105 (a URL path)
    discovery_path: str = "/oidc/.well-known/openid-configuration"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class TokenIssuer:
    """Clients, refresh tokens and access tokens, persisted in the store's database."""

    def __init__(self, config: EmulatorConfig, store: Store) -> None:
        self.config = config
        self.db = store.db
        self.db.executescript(SCHEMA)
        self.key = self._ensure_key()

    def _ensure_key(self) -> bytes:
        """Read the signing key, creating it (atomically, 0600) on first use."""
        path = self.config.root / SIGNING_KEY_FILE
        if signing_key(self.config.root) is None:
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            _write_private(tmp, base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
            with contextlib.suppress(FileExistsError):  # another process made one first
                os.link(tmp, path)
            tmp.unlink()
        key = signing_key(self.config.root)
        if key is None:
            raise OSError(f"cannot read the signing key {path}")
        return key

    # -- settings ------------------------------------------------------------------

    def setting(self, name: str) -> float:
        row = self.db.execute("SELECT value FROM oidc_settings WHERE name=?", (name,)).fetchone()
        return float(row[0]) if row else DEFAULTS[name]

    def settings(self) -> dict[str, float]:
        return {name: self.setting(name) for name in DEFAULTS}

    def set_settings(self, values: dict[str, Any]) -> None:
        _save_settings(self.db, values)

    # -- clients and refresh tokens --------------------------------------------------

    def new_client(self) -> tuple[str, str]:
        client_id = f"canfarfs-emulator-{secrets.token_hex(8)}"
        secret = secrets.token_urlsafe(32)
        self.db.execute(
            "INSERT INTO oidc_clients VALUES (?, ?, ?)", (client_id, _sha256(secret), time.time())
        )
        return client_id, secret

    def client_ok(self, client_id: str, secret: str) -> bool:
        row = self.db.execute(
            "SELECT secret_sha256 FROM oidc_clients WHERE client_id=?", (client_id,)
        ).fetchone()
        return row is not None and secrets.compare_digest(row[0], _sha256(secret))

    def new_refresh_token(self, client_id: str, user: str, scope: str = SCOPE) -> str:
        token = secrets.token_urlsafe(32)
        now = time.time()
        self.db.execute(
            "INSERT INTO oidc_refresh_tokens VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (
                _sha256(token),
                client_id,
                user,
                scope,
                now,
                now + self.setting("refresh_token_lifetime"),
            ),
        )
        return token

    def refresh_token_usable(self, token: str, client_id: str, user: str) -> bool:
        row = self.db.execute(
            "SELECT client_id, user, expires, rotated FROM oidc_refresh_tokens"
            " WHERE token_sha256=?",
            (_sha256(token),),
        ).fetchone()
        return (
            row is not None
            and tuple(row[:2]) == (client_id, user)
            and row[2] > time.time()
            and row[3] is None
        )

    def _take_refresh_token(self, token: str, client_id: str) -> tuple[str, str]:
        """Mark ``token`` used and return its (user, scope); OAuthError if it cannot be."""
        digest = _sha256(token)
        row = self.db.execute(
            "SELECT client_id, user, scope, expires, rotated FROM oidc_refresh_tokens"
            " WHERE token_sha256=?",
            (digest,),
        ).fetchone()
        if row is None or row[0] != client_id:
            raise OAuthError(400, "invalid_grant", "unknown refresh token")
        if row[4] is not None:
            raise OAuthError(400, "invalid_grant", "refresh token already used (rotated)")
        if row[3] <= time.time():
            raise OAuthError(400, "invalid_grant", "refresh token expired")
        cur = self.db.execute(
            "UPDATE oidc_refresh_tokens SET rotated=? WHERE token_sha256=? AND rotated IS NULL",
            (time.time(), digest),
        )
        if cur.rowcount != 1:
            raise OAuthError(400, "invalid_grant", "refresh token already used (rotated)")
        return str(row[1]), str(row[2])

    # -- access tokens -------------------------------------------------------------

    def access_token(self, user: User, client_id: str, scope: str, issuer: str) -> tuple[str, int]:
        """A signed access token for ``user`` and its lifetime in whole seconds."""
        lifetime = max(1, round(self.setting("access_token_lifetime")))
        now = time.time()
        claims = {
            "iss": issuer,
            "sub": user.name,
            "aud": client_id,
            "client_id": client_id,
            "scope": scope,
            "iat": int(now),
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            "preferred_username": user.name,
        }
        return sign_access_token(self.key, claims), lifetime

    def refresh(self, client_id: str, refresh_token: str, issuer: str) -> dict[str, Any]:
        """The token response for a refresh grant; the old refresh token stops working."""
        name, scope = self._take_refresh_token(refresh_token, client_id)
        user = self.config.user_named(name)
        if user is None:
            raise OAuthError(400, "invalid_grant", "refresh token user no longer exists")
        access, lifetime = self.access_token(user, client_id, scope, issuer)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "refresh_token": self.new_refresh_token(client_id, name, scope),
            "scope": scope,
        }

    # -- the grant file --------------------------------------------------------------

    def _stored_grant(self) -> Grant | None:
        try:
            data = json.loads((self.config.root / OIDC_FILE).read_text())
            return Grant(
                **{k: data[k] for k in ("client_id", "client_secret", "refresh_token", "user")}
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def new_grant(self) -> Grant:
        """A fresh refresh token for the configured user, written to ``<root>/oidc.json``."""
        old = self._stored_grant()
        if old is not None and self.client_ok(old.client_id, old.client_secret):
            client_id, secret = old.client_id, old.client_secret
        else:
            client_id, secret = self.new_client()
        user = self.config.user.name
        grant = Grant(client_id, secret, self.new_refresh_token(client_id, user), user)
        _write_private(self.config.root / OIDC_FILE, json.dumps(asdict(grant), indent=2) + "\n")
        return grant

    def ensure_grant(self) -> Grant:
        """The grant in ``<root>/oidc.json`` if still usable, else a new one."""
        old = self._stored_grant()
        if (
            old is not None
            and old.user == self.config.user.name
            and self.client_ok(old.client_id, old.client_secret)
            and self.refresh_token_usable(old.refresh_token, old.client_id, old.user)
        ):
            return old
        return self.new_grant()


def _save_settings(db: sqlite3.Connection, values: dict[str, Any]) -> None:
    """Validate and store lifetime settings (seconds); they apply to tokens issued next."""
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{name} must be a positive number of seconds")
    db.executescript(SCHEMA)
    for name, value in values.items():
        db.execute("INSERT OR REPLACE INTO oidc_settings VALUES (?, ?)", (name, float(value)))


def set_lifetimes(
    store: Store, *, access: float | None = None, refresh: float | None = None
) -> None:
    """Change token lifetimes (seconds) for tokens issued from now on (in-process tests)."""
    values = {"access_token_lifetime": access, "refresh_token_lifetime": refresh}
    _save_settings(store.db, {k: v for k, v in values.items() if v is not None})


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """client_secret_basic (preferred) or client_secret_post credentials."""
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic":
        try:
            raw = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError(401, "invalid_client", "malformed Basic credentials") from None
        client_id, sep, secret = raw.partition(":")
        if sep:
            return unquote_plus(client_id), unquote_plus(secret)
    elif "client_id" in form and "client_secret" in form:
        return form["client_id"], form["client_secret"]
    raise OAuthError(401, "invalid_client", "client authentication required")


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded body (RFC 6749 §3.2); no multipart parser needed."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "body must be application/x-www-form-urlencoded")
    body = (await request.body()).decode("utf-8", "replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def _issuer(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _discovery(request: Request) -> Response:
    issuer = _issuer(request)
    return JSONResponse(
        {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "grant_types_supported": ["refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": SCOPE.split(),
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["HS256"],
        }
    )


async def _token(request: Request, issuer: TokenIssuer) -> Response:
    if request.method != "POST":
        return JSONResponse(
            {"error": "invalid_request", "error_description": "use POST"},
            405,
            headers={"Allow": "POST"},
        )
    form = await _form(request)
    client_id, secret = _client_credentials(request, form)
    if not issuer.client_ok(client_id, secret):
        raise OAuthError(401, "invalid_client", "unknown client or wrong secret")
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError(400, "invalid_request", "grant_type is required")
    if grant_type != "refresh_token":
        raise OAuthError(400, "unsupported_grant_type", f"grant type not supported: {grant_type}")
    refresh_token = form.get("refresh_token")
    if not refresh_token:
        raise OAuthError(400, "invalid_request", "refresh_token is required")
    body = issuer.refresh(client_id, refresh_token, _issuer(request))
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _userinfo(request: Request, config: EmulatorConfig) -> Response:
    try:
        user = identify(request, config)
    except Fault as fault:
        raise OAuthError(401, "invalid_token", fault.text) from None
    if user is None:
        raise OAuthError(401, "invalid_token", "a bearer token is required")
    return JSONResponse(
        {"sub": user.name, "preferred_username": user.name, "groups": sorted(user.groups)}
    )


async def _settings(request: Request, config: EmulatorConfig, issuer: TokenIssuer) -> Response:
    user = identify(request, config)
    if user is None or user.name != config.user.name:
        raise Fault(403, "PermissionDenied: OIDC settings need the emulator token")
    if request.method == "POST":
        try:
            data = json.loads(await request.body() or b"{}")
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            issuer.set_settings(data)
        except ValueError as exc:
            raise Fault(400, f"InvalidArgument: {exc}") from exc
    elif request.method != "GET":
        raise Fault(405, "method not allowed")
    return JSONResponse(issuer.settings())


def _relative_path(scope: Scope) -> str:
    """The path below the mount point, whether or not the router kept the prefix."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return "/" + path.strip("/")


def oidc_app(config: EmulatorConfig, store: Store) -> ASGIApp:
    """The ASGI app to mount at ``/oidc``; makes the client, key and ``oidc.json`` now."""
    issuer = TokenIssuer(config, store)
    issuer.ensure_grant()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        path = _relative_path(scope)
        response: Response
        try:
            if path == "/.well-known/openid-configuration":
                response = _discovery(request)
            elif path == "/token":
                response = await _token(request, issuer)
            elif path == "/userinfo":
                response = _userinfo(request, config)
            elif path == "/_settings":
                response = await _settings(request, config, issuer)
            else:
                response = JSONResponse({"error": "not_found"}, 404)
        except OAuthError as exc:
            response = exc.response()
        except Fault as fault:
            response = fault.response()
        await response(scope, receive, send)

    return app
