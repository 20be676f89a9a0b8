"""``/_emulator``: the token-protected control endpoint for fault injection and stats."""

from __future__ import annotations

import json
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from canfarfs.emulator.auth import identify
from canfarfs.emulator.config import EmulatorConfig
from canfarfs.emulator.errors import Fault
from canfarfs.emulator.faults import FaultInjector, FaultPlan

_FIELDS = {
    "latency",
    "fail_next",
    "fail_status",
    "fail_rate",
    "drop_next",
    "drop_after",
    "path_prefix",
    "methods",
    "outage_seconds",
}


def plan_from_json(data: dict[str, Any]) -> FaultPlan:
    """Build a plan from the control endpoint's JSON (see docs/emulator.md)."""
    unknown = set(data) - _FIELDS
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
    plan = FaultPlan()
    for key, value in data.items():
        if key == "outage_seconds":
            plan.outage_until = trio.current_time() + float(value)
        elif key == "methods":
            plan.methods = frozenset(str(m).upper() for m in value)
        else:
            setattr(plan, key, type(getattr(plan, key))(value))
    return plan


def control_app(config: EmulatorConfig, faults: FaultInjector) -> ASGIApp:
    """GET /stats, POST /faults (JSON plan), DELETE /faults; primary token only."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response: Response
        try:
            user = identify(request, config)
            if user is None or user.name != config.user.name:
                raise Fault(403, "PermissionDenied: control endpoint needs the emulator token")
            path = request.url.path.rstrip("/").rsplit("/", 1)[-1]
            if path == "stats" and request.method == "GET":
                response = JSONResponse(
                    {
                        "requests": faults.requests,
                        "by_method": faults.by_method,
                        "dropped": faults.dropped,
                    }
                )
            elif path == "faults" and request.method == "POST":
                try:
                    faults.plan = plan_from_json(json.loads(await request.body() or b"{}"))
                except (ValueError, TypeError) as exc:
                    raise Fault(400, f"InvalidArgument: {exc}") from exc
                response = PlainTextResponse("ok\n")
            elif path == "faults" and request.method == "DELETE":
                faults.reset()
                response = PlainTextResponse("ok\n")
            elif path == "stats" and request.method == "DELETE":
                faults.requests = 0
                faults.by_method.clear()
                response = PlainTextResponse("ok\n")
            else:
                raise Fault(404, "not found")
        except Fault as fault:
            response = fault.response()
        await response(scope, receive, send)

    return app
