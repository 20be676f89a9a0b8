"""Fault injection for tests: latency, error answers, dropped connections, outages.

Set through the token-protected control endpoint (``/_emulator/faults``) or directly on
the :class:`FaultInjector` in-process. Rules apply to service requests only, never to
the control endpoint itself, and optionally only to paths under a prefix.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import trio
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class DroppedConnection(Exception):
    """Raised inside the app so the server aborts the connection mid-body."""


@dataclass
class FaultPlan:
    """What to do to the next requests. All fields are optional and combine."""

    #: Extra delay before each matching request is handled.
    latency: float = 0.0
    #: Answer the next ``fail_next`` matching requests with ``fail_status``.
    fail_next: int = 0
    fail_status: int = 503
    #: Answer a fraction of matching requests with ``fail_status``.
    fail_rate: float = 0.0
    #: Abort the next ``drop_next`` matching responses that reach ``drop_after`` body
    #: bytes (shorter responses pass and do not count).
    drop_next: int = 0
    drop_after: int = 0
    #: Until this trio time, abort every matching request without an answer.
    outage_until: float = 0.0
    #: Only requests whose path starts with this are affected ('' = all).
    path_prefix: str = ""
    #: Only these methods are affected (empty = all).
    methods: frozenset[str] = frozenset()


@dataclass
class FaultInjector:
    """Holds the active plan and counts the requests it saw (for benchmarks and tests)."""

    plan: FaultPlan = field(default_factory=FaultPlan)
    requests: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    #: Connections cut by ``drop_next``.
    dropped: int = 0
    _rng: random.Random = field(default_factory=lambda: random.Random(1234))  # noqa: S311

    def reset(self) -> None:
        self.plan = FaultPlan()

    def _matches(self, scope: Scope) -> bool:
        path = str(scope.get("path", ""))
        if path.startswith("/_emulator"):
            return False
        if self.plan.methods and scope.get("method") not in self.plan.methods:
            return False
        return path.startswith(self.plan.path_prefix)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def faulty(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or not self._matches(scope):
                await app(scope, receive, send)
                return
            self.requests += 1
            method = scope.get("method", "")
            self.by_method[method] = self.by_method.get(method, 0) + 1
            plan = self.plan
            if plan.outage_until and trio.current_time() < plan.outage_until:
                # Over a socket, cut the connection without an answer; in-process there is
                # no connection, and the exception becomes a 500.
                abort = scope.get("extensions", {}).get("canfarfs.abort")
                if abort is not None:
                    await abort()
                raise DroppedConnection("emulated outage")
            if plan.latency:
                await trio.sleep(plan.latency)
            fail = False
            if plan.fail_next > 0:
                plan.fail_next -= 1
                fail = True
            elif plan.fail_rate and self._rng.random() < plan.fail_rate:
                fail = True
            if fail:
                body = f"temporarily unavailable: {scope.get('path', '')}\n".encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": plan.fail_status,
                        "headers": [
                            (b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode()),
                            (b"retry-after", b"1"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
            if plan.drop_next > 0:
                await app(scope, receive, self._dropping_send(send, plan))
                return
            await app(scope, receive, send)

        return faulty

    def _dropping_send(self, send: Send, plan: FaultPlan) -> Send:
        """A send that lets ``plan.drop_after`` body bytes through, then aborts the
        connection (if the plan still asks for a drop by then)."""
        sent = 0
        after = plan.drop_after

        async def wrapped(message: Message) -> None:
            nonlocal sent
            if message["type"] == "http.response.body":
                body: bytes = message.get("body", b"")
                room = after - sent
                more = message.get("more_body", False)
                if (len(body) > room or (len(body) == room and more)) and plan.drop_next > 0:
                    plan.drop_next -= 1
                    self.dropped += 1
                    if room > 0:
                        await send(
                            {"type": "http.response.body", "body": body[:room], "more_body": True}
                        )
                    raise DroppedConnection("emulated connection drop")
                sent += len(body)
            await send(message)

        return wrapped
