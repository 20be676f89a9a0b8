"""An async Skaha v1 client on :class:`canfarfs.net.HTTP`; usable without FUSE.

Calls and wire format follow the ``canfar`` client (skaha-api.md §1, §5, §13): create
parameters in the query string of an empty-bodied POST, one POST per replica (sent
concurrently), registry credentials in ``X-Skaha-Registry-Auth``. Every failure is a
:mod:`canfarfs.errors` exception whose message never holds a credential.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx2
import trio

from canfarfs import errors
from canfarfs.net import HTTP
from canfarfs.skaha.models import RegistryAuth, Session, SessionSpec

log = logging.getLogger(__name__)

#: What a create answer holds: the new session's id (skaha-api.md §3).
SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
#: Largest JSON document or events text accepted (logs are not capped).
MAX_DOCUMENT = 32 * 1024 * 1024
_VERSION = re.compile(r"/v\d+(\.\d+)*$")
_REGEX_META = frozenset(".^$*+?{}[]()|")


def api_base(url: str) -> str:
    """The versioned API base: ``…/skaha/v1`` as given, or ``/v1`` added to a deployment
    base such as ``https://ws-uv.canfar.net/skaha``."""
    url = url.rstrip("/")
    return url if _VERSION.search(url) else f"{url}/v1"


def server_text(r: httpx2.Response) -> str:
    """The server's message without the Java exception text cadc-rest appends (§8)."""
    text = r.text.strip()
    head, sep, _ = text.partition("java.lang.")
    if sep and head.strip():
        text = head.strip()
    return " ".join(text.split())[:500]


def error_from_response(
    r: httpx2.Response, what: str, secrets: tuple[str, ...] = ()
) -> errors.CanfarfsError:
    """The domain error for a failed Skaha answer; ``secrets`` are masked out of it."""
    text = server_text(r)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    status = r.status_code
    message = f"{what}: {text or r.reason_phrase} (HTTP {status})"
    if status == 400:
        if "reached the maximum" in text:
            return errors.QuotaExceeded(message, status=status)
        if "No authentication provided" in text:
            return errors.PermissionDenied(message, status=status)
        return errors.InvalidArgument(message, status=status)
    table: dict[int, type[errors.CanfarfsError]] = {
        401: errors.AuthExpired,
        403: errors.PermissionDenied,
        404: errors.NotFound,
        405: errors.InvalidArgument,
        409: errors.AlreadyExists,
        413: errors.InvalidArgument,
        422: errors.InvalidArgument,
        429: errors.Unavailable,
    }
    if status in table:
        return table[status](message, status=status)
    if status >= 500:
        return errors.Unavailable(message, status=status)
    return errors.CanfarfsError(message, status=status)


@dataclass
class Launch:
    """The outcome of one create: ids in replica order, failures by replica number."""

    names: list[str]
    by_replica: dict[int, str] = field(default_factory=dict)
    failures: dict[int, errors.CanfarfsError] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [self.by_replica[i] for i in sorted(self.by_replica)]

    @property
    def ok(self) -> bool:
        return not self.failures


class SkahaClient:
    """The Skaha session API at ``base_url`` (the versioned base, e.g.
    ``https://ws-uv.canfar.net/skaha/v1``; a base without ``/vN`` gets ``/v1``)."""

    def __init__(self, http: HTTP, base_url: str, *, concurrency: int = 16) -> None:
        self.http = http
        self.base = api_base(base_url)
        self._limit = trio.CapacityLimiter(concurrency)

    def _session_url(self, sid: str = "") -> str:
        url = f"{self.base}/session"
        return f"{url}/{quote(sid, safe='')}" if sid else url

    async def _get(
        self, url: str, what: str, params: dict[str, str] | None = None
    ) -> httpx2.Response:
        r = await self.http.request("GET", url, params=params or None)
        if r.status_code != 200:
            raise error_from_response(r, what)
        if len(r.content) > MAX_DOCUMENT:
            raise errors.ProtocolError(f"{what}: answer larger than {MAX_DOCUMENT} bytes")
        return r

    async def _json(self, url: str, what: str, params: dict[str, str] | None = None) -> Any:
        r = await self._get(url, what, params)
        try:
            return json.loads(r.content)
        except ValueError as exc:
            raise errors.ProtocolError(f"{what}: the server's answer is not JSON ({exc})") from None

    # -- reading ---------------------------------------------------------------------------

    async def list_raw(
        self, kind: str | None = None, status: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """``GET session`` as the JSON objects received (desktop-apps only when asked)."""
        params = {k: v for k, v in (("type", kind), ("status", status)) if v}
        data = await self._json(self._session_url(), "list sessions", params)
        if not isinstance(data, list):
            raise errors.ProtocolError("list sessions: expected a JSON array")
        return [item for item in data if isinstance(item, dict)]

    async def list(self, kind: str | None = None, status: str | None = None) -> list[Session]:
        """The caller's sessions, optionally filtered by kind and status."""
        return [Session.from_json(item) for item in await self.list_raw(kind, status)]

    async def info_raw(self, sid: str) -> dict[str, Any]:
        data = await self._json(self._session_url(sid), f"info {sid}")
        if not isinstance(data, dict):
            raise errors.ProtocolError(f"info {sid}: expected a JSON object")
        return data

    async def info(self, sid: str) -> Session:
        return Session.from_json(await self.info_raw(sid))

    async def logs(self, sid: str) -> bytes:
        """The container output so far (the server answers an unknown id with nothing)."""
        r = await self.http.request("GET", self._session_url(sid), params={"view": "logs"})
        if r.status_code != 200:
            raise error_from_response(r, f"logs {sid}")
        return r.content

    async def events(self, sid: str) -> str:
        return (await self._get(self._session_url(sid), f"events {sid}", {"view": "events"})).text

    async def stats(self) -> Any:
        return await self._json(self._session_url(), "stats", {"view": "stats"})

    async def images(self, kind: str | None = None) -> Any:
        return await self._json(f"{self.base}/image", "images", {"type": kind} if kind else None)

    async def context(self) -> Any:
        return await self._json(f"{self.base}/context", "context")

    # -- changing --------------------------------------------------------------------------

    async def create(
        self,
        spec: SessionSpec,
        registry: RegistryAuth | None = None,
        *,
        extra_env: Mapping[int, Mapping[str, str]] | None = None,
        only: Collection[int] | None = None,
    ) -> Launch:
        """Launch every replica concurrently; per-replica failures land in ``failures``.

        ``registry`` (or ``spec.registry``, which wins) goes in ``X-Skaha-Registry-Auth``.
        ``extra_env`` adds variables per replica (1-based); ``only`` launches just those
        replicas (a job array's retry), with the names and ``REPLICA_ID`` they had.
        """
        auth = spec.registry or registry
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        secrets: tuple[str, ...] = ()
        if auth is not None:
            headers["X-Skaha-Registry-Auth"] = auth.header()
            secrets = (auth.secret.get_secret_value(), auth.header())
        launch = Launch(names=spec.names())
        payloads = spec.create_params(extra_env)

        async def one(replica: int, params: builtins.list[tuple[str, str]]) -> None:
            async with self._limit:
                try:
                    launch.by_replica[replica] = await self._create_one(
                        params, headers, launch.names[replica - 1], secrets
                    )
                except errors.CanfarfsError as exc:
                    launch.failures[replica] = exc

        async with trio.open_nursery() as nursery:
            for replica, params in enumerate(payloads, start=1):
                if only is None or replica in only:
                    nursery.start_soon(one, replica, params)
        if launch.failures:
            log.info(
                "create %s: %d of %d replicas failed",
                spec.name,
                len(launch.failures),
                len(payloads) if only is None else len(only),
            )
        return launch

    async def _create_one(
        self,
        params: builtins.list[tuple[str, str]],
        headers: dict[str, str],
        name: str,
        secrets: tuple[str, ...],
    ) -> str:
        what = f"create {name}"
        url = f"{self._session_url()}?{urlencode(params)}"
        r = await self.http.request("POST", url, content=b"", headers=headers, idempotent=False)
        if r.status_code != 200:
            raise error_from_response(r, what, secrets)
        sid = r.text.strip()
        if not SESSION_ID.fullmatch(sid):
            raise errors.ProtocolError(f"{what}: the server answered no session id")
        return sid

    async def renew(self, sid: str) -> None:
        """Extend the session's expiry (400 from the server if it is not active)."""
        r = await self.http.request(
            "POST",
            self._session_url(sid),
            params={"action": "renew"},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            idempotent=True,
        )
        if r.status_code != 200:
            raise error_from_response(r, f"renew {sid}")

    async def destroy(self, sid: str) -> None:
        """End the session (the server answers 200 even for an unknown id)."""
        r = await self.http.request("DELETE", self._session_url(sid))
        if r.status_code != 200:
            raise error_from_response(r, f"destroy {sid}")

    async def destroy_with(
        self, prefix: str, *, kind: str = "headless", status: str = "Completed"
    ) -> dict[str, bool]:
        """canfar's bulk destroy: sessions of ``kind`` and ``status`` whose name starts
        with ``prefix`` (a regex, searched, if it holds regex metacharacters)."""
        if any(c in _REGEX_META for c in prefix):
            try:
                pattern = re.compile(prefix)
            except re.error as exc:
                raise errors.InvalidArgument(f"invalid pattern {prefix!r}: {exc}") from None
        else:
            pattern = re.compile("^" + re.escape(prefix))
        targets = [
            s.id
            for s in await self.list(kind, status)
            if s.name is not None and pattern.search(s.name)
        ]
        results: dict[str, bool] = {}

        async def one(sid: str) -> None:
            async with self._limit:
                try:
                    await self.destroy(sid)
                    results[sid] = True
                except errors.CanfarfsError as exc:
                    log.info("%s", exc)
                    results[sid] = False

        async with trio.open_nursery() as nursery:
            for sid in targets:
                nursery.start_soon(one, sid)
        return results
