"""Who is calling: a bearer token (also as X-CADC-DelegationToken) or an X.509 client cert.

Tokens are either a configured user's static token or an access token issued by the
emulator's OIDC token endpoint (:mod:`canfarfs.emulator.oidc`): a JWT signed (HS256)
with the key in ``<root>/oidc-signing.key``, so it stays valid across restarts until
its ``exp``. Client certificates reach the app through the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_name"]``), set by the emulator's TLS
server once the handshake has verified the chain and validity against the emulator CA.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import HTTPConnection

from canfarfs.emulator.config import EmulatorConfig, User
from canfarfs.emulator.errors import not_authenticated

SIGNING_KEY_FILE = "oidc-signing.key"
_CN = re.compile(r"(?:^|,)\s*CN=([^,]+)")
_JWT_HEADER = {"alg": "HS256", "typ": "JWT"}
_keys: dict[Path, bytes] = {}


def cert_user_name(subject: str) -> str | None:
    """The user name in a certificate subject (the first CN, as CADC proxy certs carry)."""
    m = _CN.search(subject)
    if not m:
        return None
    cn = m.group(1).strip()
    # CADC proxy subjects look like "CN=alice_abc,OU=cadc,O=hia,C=ca": the name is
    # the part before the first underscore.
    return cn.split("_", 1)[0]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signing_key(root: Path) -> bytes | None:
    """The access-token signing key under ``root``, or None before the OIDC app made one."""
    path = root / SIGNING_KEY_FILE
    key = _keys.get(path)
    if key is None:
        try:
            key = _unb64(path.read_text().strip())
        except (OSError, ValueError):
            return None
        if len(key) < 32:
            return None
        _keys[path] = key
    return key


def sign_access_token(key: bytes, claims: dict[str, Any]) -> str:
    """A compact HS256 JWT carrying ``claims``."""
    head = _b64(json.dumps(_JWT_HEADER, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


def _jwt_claims(token: str, key: bytes) -> dict[str, Any] | None:
    """The claims of a token signed with ``key``; None if it is not one of ours."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        mac = _unb64(parts[2])
        expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            return None
        if json.loads(_unb64(parts[0])) != _JWT_HEADER:
            return None
        claims = json.loads(_unb64(parts[1]))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def _issued_token_user(token: str, config: EmulatorConfig) -> User | None:
    """The user an issued access token stands for; 401 when expired or for unknown users."""
    key = signing_key(config.root)
    claims = _jwt_claims(token, key) if key is not None else None
    if claims is None:
        return None
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp <= time.time():
        when = datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None
        raise not_authenticated(
            f"access token expired at {when:%Y-%m-%dT%H:%M:%SZ}" if when else "access token expired"
        )
    user = config.user_named(str(claims.get("sub", "")))
    if user is None:
        raise not_authenticated("access token subject not known")
    return user


def _bearer(conn: HTTPConnection) -> str | None:
    """The token from ``Authorization: Bearer`` or ``X-CADC-DelegationToken``, if any."""
    auth = conn.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise not_authenticated("unsupported authorization scheme")
        return value.strip()
    delegation = conn.headers.get("x-cadc-delegationtoken", "").strip()
    return delegation or None


def token_user(token: str, config: EmulatorConfig) -> User:
    """The identity a bearer token stands for (static or issued); 401 otherwise."""
    user = config.user_for_token(token) or _issued_token_user(token, config)
    if user is None:
        raise not_authenticated()
    return user


def _cert_subject(conn: HTTPConnection) -> str | None:
    tls = conn.scope.get("extensions", {}).get("tls", {})
    subject = tls.get("client_cert_name") if isinstance(tls, dict) else None
    return subject if isinstance(subject, str) and subject else None


def identify(conn: HTTPConnection, config: EmulatorConfig) -> User | None:
    """The caller's identity, or None for an anonymous request.

    A token wins over a client certificate. A credential that is present but wrong
    raises the 401 the services answer; a missing one is anonymous (each endpoint
    decides what anonymous may do).
    """
    token = _bearer(conn)
    if token is not None:
        return token_user(token, config)
    subject = _cert_subject(conn)
    if subject:
        name = cert_user_name(subject)
        user = config.user_named(name) if name else None
        if user is None:
            raise not_authenticated(f"certificate subject not known: {subject}")
        return user
    return None
