"""HTTP plumbing shared by the VOSpace and Skaha clients.

Every request is bounded (``trio.fail_after``) and idempotent ones are retried with
exponential backoff and jitter (honouring ``Retry-After``). Transport failures become
:class:`~canfarfs.errors.Unavailable`, time-outs :class:`~canfarfs.errors.Timeout`.
Credentials come from a :class:`Credentials` object so a token can be refreshed while
mounted; they are never logged.
"""

from __future__ import annotations

import logging
import random
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import trio
from httpcore2 import AsyncHTTP11Connection

from canfarfs.bulk import BulkGetter
from canfarfs.errors import Timeout, Unavailable

log = logging.getLogger(__name__)

# httpcore reads 64 KiB per receive; every read is an h11 event and a few task switches,
# which made the body loop, not the network, the limit of a 1 GiB download. 1 MiB reads
# cut that overhead by 16 (docs/performance.md).
AsyncHTTP11Connection.READ_NUM_BYTES = 1024 * 1024

#: Statuses worth another try for an idempotent request.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass
class RetryPolicy:
    """How often and how patiently to retry. ``sleep`` is swappable for tests."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0
    sleep: Callable[[float], Any] = trio.sleep

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_delay)
        d = min(self.base_delay * 2.0**attempt, self.max_delay)
        return d * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not crypto


@dataclass
class Credentials:
    """What identifies us to a service: a bearer token, a client certificate, or nothing.

    ``token_provider`` (if set) is called before each request so a refreshed token is
    picked up; it may raise :class:`~canfarfs.errors.AuthExpired`.
    """

    token: str | None = None
    cert_file: str | None = None
    token_provider: Callable[[], Any] | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    async def headers(self) -> dict[str, str]:
        h = dict(self.extra_headers)
        token = self.token
        if self.token_provider is not None:
            token = await self.token_provider()
        if token:
            h["Authorization"] = f"Bearer {token}"
        return h


@dataclass
class Timeouts:
    """Bounds on network waits, in seconds."""

    connect: float = 10.0
    #: Longest silence while reading a body or waiting for headers.
    read: float = 30.0
    #: Whole metadata operations (listing pages, property updates, job polling).
    operation: float = 60.0


def make_client(
    *,
    verify: ssl.SSLContext | str | bool = True,
    cert: str | None = None,
    timeouts: Timeouts | None = None,
    max_connections: int = 32,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> httpx2.AsyncClient:
    """A pooled keep-alive client. TLS verification is on unless ``verify`` says how."""
    t = timeouts or Timeouts()
    limits = httpx2.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
    )
    return httpx2.AsyncClient(
        verify=verify,
        cert=cert,
        timeout=httpx2.Timeout(t.read, connect=t.connect, pool=t.operation),
        limits=limits,
        transport=transport,
        follow_redirects=False,
        trust_env=False,
    )


class HTTP:
    """A client plus the policy for using it: credentials, bounds and retries."""

    def __init__(
        self,
        client: httpx2.AsyncClient,
        credentials: Credentials | None = None,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.client = client
        self.credentials = credentials or Credentials()
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        #: Requests sent (counted for status and benchmarks).
        self.sent = 0
        #: Worker-thread downloads for large bodies (None: bodies go through ``client``).
        self.bulk: BulkGetter | None = None

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.bulk is not None:
            self.bulk.close()

    async def _headers(self, extra: Mapping[str, str] | None, auth: bool) -> dict[str, str]:
        h = await self.credentials.headers() if auth else {}
        if extra:
            h.update(extra)
        return h

    async def request(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool | None = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        bound: float | None = None,
    ) -> httpx2.Response:
        """Send one request, read the whole body; retry transient failures if idempotent.

        Returns the last response (callers interpret the status). Raises Timeout when
        the bound runs out and Unavailable when the server cannot be reached.
        """
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
        limit = bound if bound is not None else self.timeouts.operation
        deadline = trio.current_time() + limit
        attempts = self.retry.attempts if idempotent else 1
        last: str = "failed"
        timed_out = False
        for attempt in range(attempts):
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                timed_out = True
                break
            try:
                with trio.fail_after(remaining):
                    h = await self._headers(headers, auth)
                    self.sent += 1
                    response = await self.client.request(
                        method, url, content=content, data=data, params=params, headers=h
                    )
            except trio.TooSlowError:
                timed_out = True
                break
            except httpx2.TimeoutException as exc:
                timed_out, last = True, f"timed out ({exc})"
            except httpx2.TransportError as exc:
                timed_out, last = False, transport_reason(exc)
            else:
                if response.status_code not in RETRY_STATUSES or attempt == attempts - 1:
                    return response
                timed_out, last = False, f"HTTP {response.status_code}"
                retry_after = response.headers.get("retry-after")
                if not await self._backoff(attempt, method, url, last, retry_after, deadline):
                    return response
                continue
            if attempt < attempts - 1 and not await self._backoff(
                attempt, method, url, last, None, deadline
            ):
                break
        if timed_out:
            raise Timeout(f"{method} {_short(url)}: no answer within {limit:g} s")
        raise Unavailable(f"{method} {_short(url)}: {last}")

    async def _backoff(
        self,
        attempt: int,
        method: str,
        url: str,
        why: str,
        retry_after: str | None,
        deadline: float,
    ) -> bool:
        """Sleep before another try; False when the deadline leaves no room for one."""
        delay = self.retry.delay(attempt, retry_after)
        if trio.current_time() + delay >= deadline:
            return False
        level = logging.INFO if attempt < 2 else logging.WARNING
        log.log(level, "retrying %s %s after %s (try %d)", method, _short(url), why, attempt + 2)
        await self.retry.sleep(delay)
        return True

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        content: Any = None,
        bound: float | None = None,
    ) -> AsyncIterator[httpx2.Response]:
        """Open a streamed response (headers within the bound; the body is the caller's).

        Not retried here: streamed readers resume by themselves (range or restart).
        """
        limit = bound if bound is not None else self.timeouts.read
        h = await self._headers(headers, auth)
        request = self.client.build_request(method, url, headers=h, content=content)
        try:
            with trio.fail_after(limit):
                self.sent += 1
                response = await self.client.send(request, stream=True)
        except trio.TooSlowError:
            raise Timeout(f"{method} {_short(url)}: no answer within {limit:g} s") from None
        except httpx2.TimeoutException as exc:
            raise Timeout(f"{method} {_short(url)}: timed out ({exc})") from None
        except httpx2.TransportError as exc:
            raise Unavailable(f"{method} {_short(url)}: {transport_reason(exc)}") from None
        try:
            yield response
        finally:
            await response.aclose()


def transport_reason(exc: BaseException) -> str:
    """Why a connection failed, in words: httpx2's ConnectError often has no message and
    keeps the reason (e.g. ``CERTIFICATE_VERIFY_FAILED``) in its causes."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError):
            reason = getattr(seen, "reason", None) or str(seen)
            detail = getattr(seen, "verify_message", None)
            return f"TLS: {reason}" + (f" ({detail})" if detail else "")
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def _short(url: str) -> str:
    """A URL for log lines: no query string (pre-authorised tokens live in paths, so cut
    the ``preauth:`` segment too)."""
    base = url.split("?", 1)[0]
    if "preauth:" in base:
        head, _, tail = base.partition("preauth:")
        base = head + "preauth:…/" + tail.partition("/")[2]
    return base
