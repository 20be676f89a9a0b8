"""Reuse the ``canfar`` CLI's login: endpoints and credentials from ``~/.canfar/config.yaml``.

skaha-api.md §11 describes the file. We read the active server and authentication record;
an OIDC access token is refreshed the way the ``canfar`` client does (refresh grant with
HTTP Basic client credentials; the file rewritten atomically, 0600, keys sorted), with a
safety margin, re-reading the file first because another process may have refreshed (and
rotated) it. We never add keys of our own: the ``canfar`` client rejects unknown keys.
An X.509 record gives the certificate path; its expiry is read from the certificate.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx2
import trio
import yaml

from canfarfs import errors

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path.home() / ".canfar" / "config.yaml"
#: Refresh this long before the access token expires (the canfar client uses none), or
#: half the token's lifetime if that is shorter: a token that lives under two margins
#: would otherwise be refreshed before every request.
REFRESH_MARGIN = 60.0
RELOGIN = "run `canfar auth login` to log in again"


@dataclass
class Login:
    """Where the services are and how to authenticate, from the canfar configuration."""

    skaha_url: str | None
    arc_url: str | None
    vault_url: str | None
    token: OIDCToken | None = None
    cert_file: str | None = None
    cert_expiry: float | None = None
    source: str = ""


@dataclass
class OIDCToken:
    """An access token that refreshes itself from the config file's refresh token."""

    path: Path
    idp: str
    access: str
    expires: float
    _lock: trio.Lock = field(default_factory=trio.Lock, repr=False)
    #: TLS verification for the token endpoint (the mount's ``--ca-file``, if given).
    verify: ssl.SSLContext | bool = field(default=True, repr=False)
    #: The current token's lifetime: ``expires_in`` when we refreshed it, or the time it
    #: had left when read from the file (its issue time is not recorded there).
    lifetime: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if not self.lifetime:
            self.lifetime = self.expires - time.time()

    def _fresh(self) -> bool:
        margin = max(0.0, min(REFRESH_MARGIN, self.lifetime / 2))
        return self.expires - margin > time.time()

    async def __call__(self) -> str:
        """The current access token, refreshed first if it is about to expire."""
        if self._fresh():
            return self.access
        async with self._lock:
            if self._fresh():
                return self.access
            await self._refresh()
            return self.access

    async def _refresh(self) -> None:
        config = await trio.to_thread.run_sync(_read, self.path)
        record = config.get("authentication", {}).get(self.idp, {})
        token = record.get("token", {})
        expiry = float(record.get("expiry", {}).get("access") or 0)
        if token.get("access") and token["access"] != self.access:  # refreshed elsewhere?
            other = OIDCToken(self.path, self.idp, token["access"], expiry)
            if other._fresh():
                self.access, self.expires, self.lifetime = other.access, expiry, other.lifetime
                return
        endpoint = record.get("endpoints", {}).get("token")
        client = record.get("client", {})
        refresh = token.get("refresh")
        if not (endpoint and client.get("identity") and client.get("secret") and refresh):
            raise errors.AuthExpired(
                f"the access token has expired and cannot be refreshed; {RELOGIN}"
            )
        basic = base64.b64encode(f"{client['identity']}:{client['secret']}".encode()).decode()
        try:
            async with httpx2.AsyncClient(timeout=30, verify=self.verify) as http:
                r = await http.post(
                    endpoint,
                    data={"grant_type": "refresh_token", "refresh_token": refresh},
                    headers={"Authorization": f"Basic {basic}"},
                )
        except httpx2.HTTPError as exc:
            raise errors.Unavailable(f"token refresh failed: {type(exc).__name__}") from None
        if r.status_code != 200:
            raise errors.AuthExpired(
                f"the identity provider refused the refresh (HTTP {r.status_code}); {RELOGIN}"
            )
        answer = r.json()
        token["access"] = answer["access_token"]
        if answer.get("refresh_token"):
            if answer["refresh_token"] != refresh:
                record.setdefault("expiry", {})["refresh"] = None
            token["refresh"] = answer["refresh_token"]
        for key in ("token_type", "scope"):
            if key in answer:
                token[key] = answer[key]
        now = time.time()
        expires = float(answer.get("expires_at") or now + float(answer["expires_in"]))
        record.setdefault("expiry", {})["access"] = expires
        await trio.to_thread.run_sync(_write, self.path, config)
        self.access, self.expires, self.lifetime = token["access"], expires, expires - now
        log.info("access token refreshed (valid for %.0f s)", expires - time.time())


def _read(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise errors.InvalidArgument(f"{path} is not a canfar configuration")
    return data


def _write(path: Path, config: dict[str, Any]) -> None:
    """Atomic replace, mode 0600, keys sorted — as the canfar client writes it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=True)
    os.replace(tmp, path)


def cert_expiry(path: str) -> float:
    """notAfter of the (first) certificate in a PEM, as epoch seconds."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    return cert.not_valid_after_utc.replace(tzinfo=UTC).timestamp()


def load_login(path: Path = DEFAULT_CONFIG, env: Mapping[str, str] | None = None) -> Login:
    """The active server and credentials. Env overrides: CANFAR_URL, CANFAR_TOKEN,
    CANFAR_CERTIFICATE (as the canfar client reads them). Raises CanfarfsError with a
    sentence a person can act on."""
    env = os.environ if env is None else env
    config = _read(path) if path.exists() else {}
    active = config.get("active", {}) or {}
    server = (config.get("servers", {}) or {}).get(active.get("server") or "", {}) or {}
    storage = server.get("storage", {}) or {}
    skaha = env.get("CANFAR_URL") or (
        f"{server['url'].rstrip('/')}/{server.get('version', 'v1')}" if server.get("url") else None
    )
    login = Login(
        skaha_url=skaha,
        arc_url=(storage.get("arc") or {}).get("url"),
        vault_url=(storage.get("vault") or {}).get("url"),
        source=str(path),
    )
    if env.get("CANFAR_TOKEN"):
        login.token = OIDCToken(path, "", env["CANFAR_TOKEN"], float("inf"))
        return login
    cert = env.get("CANFAR_CERTIFICATE")
    idp = active.get("authentication") or ""
    record = (config.get("authentication", {}) or {}).get(idp, {}) or {}
    if not cert and record.get("mode") == "oidc":
        token = record.get("token", {}) or {}
        login.token = OIDCToken(
            path,
            idp,
            token.get("access") or "",
            float((record.get("expiry", {}) or {}).get("access") or 0),
        )
        return login
    if not cert and record.get("mode") == "x509":
        cert = record.get("path")
    if not cert and not config:
        cert = str(Path.home() / ".ssl" / "cadcproxy.pem")  # the canfar default
    login.cert_file = cert or None
    return login


def check_credentials(login: Login) -> None:
    """Refuse, with a sentence a person can act on, credentials that cannot work."""
    if login.token is not None:
        return
    cert = login.cert_file
    if cert is None:
        raise errors.AuthExpired(f"no credentials in {login.source}; {RELOGIN}")
    if not Path(cert).exists():
        raise errors.AuthExpired(f"no credentials: {cert} does not exist; {RELOGIN}")
    try:
        login.cert_expiry = cert_expiry(cert)
    except ValueError as exc:
        raise errors.AuthExpired(f"{cert} is not a certificate ({exc}); {RELOGIN}") from None
    if login.cert_expiry < time.time():
        raise errors.AuthExpired(f"the certificate {cert} expired; {RELOGIN}")
