"""Skaha v1 emulator: the session API at ``/skaha`` (skaha-api.md; docs/emulator-skaha.md).

Mounted by the emulator's router at ``/skaha`` (``root_path``; ``path`` may or may not
still hold the prefix). Sessions live in SQLite (:mod:`canfarfs.emulator.skaha_db`);
headless ones run as local processes (:mod:`canfarfs.emulator.sessions_runner`),
started by :meth:`SkahaService.run`, which whoever serves the app runs in its nursery.
"""

from __future__ import annotations

import html
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import trio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from canfarfs.emulator.auth import identify
from canfarfs.emulator.config import EmulatorConfig, User
from canfarfs.emulator.errors import Fault
from canfarfs.emulator.sessions_runner import SessionRunner, kill_orphans, log_path
from canfarfs.emulator.skaha_db import SessionDB
from canfarfs.emulator.skaha_model import (
    ACTIVE,
    DESKTOP_APP,
    HARBOR_HOSTS,
    HEADLESS,
    INTERACTIVE_KINDS,
    PENDING,
    RAM_OPTIONS,
    RUNNING,
    CreateSpec,
    Params,
    SessionRow,
    SkahaSettings,
    capabilities_xml,
    context_json,
    events_table,
    gson,
    illegal_argument,
    images_json,
    matches,
    new_app_id,
    new_session_id,
    parse_cores,
    parse_create,
    parse_option,
    posix_id,
    public_json,
    session_json,
    stats_json,
    unsupported,
)
from canfarfs.emulator.store import Store
from canfarfs.emulator.vosi import availability_xml

JSON = "application/json"
TEXT = "text/plain"
XML = "text/xml"
MAX_FORM = 1024 * 1024
_POD_CHARS = "bcdfghjklmnpqrstvwxz2456789"
#: connectURL path segment → session kind, for the stand-in session pages.
_UI_KINDS = {
    "desktop": "desktop",
    "notebook": "notebook",
    "carta": "carta",
    "contrib": "contributed",
    "firefly": "firefly",
}


@dataclass
class Clock:
    """Wall-clock seconds, shiftable by tests (expiry and renew without waiting)."""

    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _json(data: object) -> Response:
    return Response(gson(data), 200, media_type=JSON)


def _ok(body: str = "") -> Response:
    return Response(body.encode(), 200, media_type=TEXT)


def _not_found(sid: str) -> Fault:
    return Fault(404, f"session {sid} not found")


def _pod_suffix() -> str:
    return "".join(secrets.choice(_POD_CHARS) for _ in range(5))


def _app_name(image: str) -> str:
    last = image.rsplit("/", 1)[-1].split(":", 1)[0].lower()
    return "".join(c if c.isalnum() and c.isascii() else "-" for c in last).strip("-") or "app"


class SkahaAPI:
    """The ASGI app: routing, authentication, and one method per operation."""

    def __init__(
        self,
        config: EmulatorConfig,
        db: SessionDB,
        runner: SessionRunner,
        settings: SkahaSettings,
        clock: Clock,
    ) -> None:
        self.config = config
        self.db = db
        self.runner = runner
        self.settings = settings
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self.dispatch(request)
        except Fault as fault:
            response = fault.response()
        if request.method == "HEAD":
            response = Response(b"", response.status_code, media_type=response.media_type)
        await response(scope, receive, send)

    # -- routing -------------------------------------------------------------------------

    async def dispatch(self, request: Request) -> Response:
        path = _relative_path(request.scope).lstrip("/")
        if not path.isprintable() or (not path.isascii() and _undecodable(path)):
            raise Fault(404, "not found")
        head, _, rest = path.partition("/")
        method = request.method
        if path.rstrip("/") == "":
            return self._only(method, ("GET", "HEAD")) or _ok("skaha (canfarfs emulator)\n")
        if head in ("capabilities", "availability") and not rest:
            return self._only(method, ("GET", "HEAD")) or self._vosi(request, head)
        if head == "session-ui":
            return self._only(method, ("GET", "HEAD")) or self._session_page(rest)
        version, _, rest = path.partition("/")
        servlet, slash, rest = rest.partition("/")
        if version != "v1":
            raise Fault(404, "not found")
        if servlet == "session":
            return await self._session_servlet(request, rest if slash else None)
        if servlet in ("image", "context", "repository"):
            refused = self._only(method, ("GET",))
            return refused or self._info_servlet(request, servlet)
        raise Fault(404, "not found")

    @staticmethod
    def _only(method: str, allowed: tuple[str, ...]) -> Response | None:
        """The cadc-rest answer to a method the servlet does not implement."""
        if method in allowed:
            return None
        return Response(f"unsupported: HTTP {method}\n".encode(), 400, media_type=TEXT)

    def _user(self, request: Request) -> User:
        user = identify(request, self.config)
        if user is None:
            raise Fault(401, "Unauthorized")
        return user

    def _base(self, request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def _vosi(self, request: Request, which: str) -> Response:
        if which == "capabilities":
            return Response(capabilities_xml(self._base(request)), 200, media_type=XML)
        note = "Skaha Service Available. (canfarfs emulator)"
        return Response(availability_xml(note), 200, media_type=XML)

    async def _session_servlet(self, request: Request, rest: str | None) -> Response:
        refused = self._only(request.method, ("GET", "POST", "DELETE"))
        if refused:
            return refused
        user = self._user(request)
        sid, app, appid = self._session_path(rest)
        method = request.method
        if method == "GET":
            return await self._get(request, user, sid, app, appid)
        if method == "POST":
            return await self._post(request, user, sid, app, appid)
        return await self._delete(user, sid, app, appid)

    @staticmethod
    def _session_path(rest: str | None) -> tuple[str | None, bool, str | None]:
        """``<id>[/app[/<appID>]]`` split as SessionAction does (any 2nd segment = app)."""
        if not rest:
            return None, False, None
        parts = rest.split("/")
        while len(parts) > 1 and parts[-1] == "":
            parts.pop()
        if len(parts) > 3:
            raise illegal_argument(f"Invalid request: {rest}")
        return parts[0], len(parts) > 1, parts[2] if len(parts) > 2 else None

    def _info_servlet(self, request: Request, servlet: str) -> Response:
        self._user(request)
        if servlet == "image":
            return _json(images_json(request.query_params.get("type")))
        if servlet == "context":
            return _json(context_json(self.settings.max_sessions))
        return _json(list(HARBOR_HOSTS))

    # -- GET -------------------------------------------------------------------------

    async def _get(
        self, request: Request, user: User, sid: str | None, app: bool, appid: str | None
    ) -> Response:
        q = request.query_params
        view = q.get("view")
        if app:
            if appid is None:
                rows = [
                    r
                    for r in self.db.rows(None if view == "all" else user.name)
                    if matches(r, DESKTOP_APP, q.get("status"))
                ]
                return self._listing(request, rows, public=view == "all")
            return _json(self._json(request, self._app_row(user, sid or "", appid)))
        if sid is None:
            return self._list(request, user, view)
        if view == "logs":
            return await self._logs(user, sid)
        row = self._own(user, sid)
        if row is None:
            raise _not_found(sid)
        if view == "events":
            return _ok(events_table(self.db.events(row.key)))
        return _json(self._json(request, row))

    def _list(self, request: Request, user: User, view: str | None) -> Response:
        q = request.query_params
        kind, status = q.get("type"), q.get("status")
        if view == "stats":
            mem = _host_memory()
            return _json(stats_json(self.db.rows(), os.cpu_count() or 1, mem))
        if view == "interactive":
            rows = [
                r
                for r in self.db.rows(user.name)
                if r.kind != HEADLESS and matches(r, r.kind, status)
            ]
            return self._listing(request, rows)
        if view == "all":
            rows = [r for r in self.db.rows() if matches(r, kind, status)]
            return self._listing(request, rows, public=True)
        rows = [r for r in self.db.rows(user.name) if matches(r, kind, status)]
        return self._listing(request, rows)

    def _listing(self, request: Request, rows: list[SessionRow], public: bool = False) -> Response:
        if public:
            return _json([public_json(r) for r in rows])
        return _json([self._json(request, r) for r in rows])

    def _json(self, request: Request, row: SessionRow) -> dict[str, object]:
        owner = self.config.user_named(row.userid)
        groups = sorted(owner.groups) if owner else []
        return session_json(row, self._base(request), groups)

    def _own(self, user: User, sid: str) -> SessionRow | None:
        """The caller's session with this id (desktop-apps sharing the id excluded)."""
        rows = [r for r in self.db.rows(user.name, sid) if r.appid is None]
        return rows[0] if rows else None

    def _app_row(self, user: User, sid: str, appid: str) -> SessionRow:
        row = self.db.get(f"{sid}/{appid}")
        if row is None or row.userid != user.name:
            raise Fault(404, f"desktop-app {appid} of session {sid} not found")
        return row

    async def _logs(self, user: User, sid: str) -> Response:
        """The process output so far; unknown or pending sessions give an empty 200."""
        row = self._own(user, sid)
        path = log_path(self.config.root, sid) if row and row.kind == HEADLESS else None
        return StreamingResponse(_read_log(path), 200, media_type=TEXT)

    # -- POST ------------------------------------------------------------------------

    async def _post(
        self, request: Request, user: User, sid: str | None, app: bool, appid: str | None
    ) -> Response:
        params = await _params(request)
        if sid is None:
            return self._create(request, user, params)
        if app:
            if appid is not None:
                raise unsupported("Cannot modify an existing app.")
            return self._attach(user, sid, params)
        action = params.get("action")
        if not action:
            raise unsupported("Cannot modify an existing session")
        if action.lower() != "renew":
            raise unsupported("unrecognized action")
        self._renew(user, sid)
        return _ok()

    def _create(self, request: Request, user: User, params: Params) -> Response:
        active = sum(
            1 for r in self.db.rows(user.name) if r.status in ACTIVE and r.kind in INTERACTIVE_KINDS
        )
        spec = parse_create(
            params,
            request.headers.get("x-skaha-registry-auth"),
            active,
            self.settings.max_sessions,
            user.name,
        )
        sid = new_session_id()
        while self.db.id_taken(sid):
            sid = new_session_id()
        row = self._new_row(sid, user, spec)
        self.db.insert(row)
        self.runner.launch(row)
        return _ok(f"{sid}\n")

    def _new_row(self, sid: str, user: User, spec: CreateSpec) -> SessionRow:
        headless = spec.kind == HEADLESS
        return SessionRow(
            key=sid,
            id=sid,
            userid=user.name,
            kind=spec.kind,
            name=spec.name,
            image=spec.image,
            status=PENDING,
            created=self.clock(),
            deadline=self.settings.headless_deadline if headless else self.settings.session_expiry,
            pod=_pod_suffix(),
            cores=spec.cores,
            ram=spec.ram,
            gpus=spec.gpus,
            cmd=spec.cmd,
            args=spec.args,
            env=spec.env,
            registry_user=spec.registry_user,
        )

    def _attach(self, user: User, sid: str, params: Params) -> Response:
        """``POST session/<id>/app``: a desktop-app sharing the desktop's session id."""
        image = params.get("image")
        if image is None:
            raise illegal_argument("Missing parameter 'image'")
        cores = parse_cores(params.get("cores"))
        ram = parse_option(params.get("ram"), "ram", RAM_OPTIONS)
        desktop = self._own(user, sid)
        if desktop is None or desktop.status not in ACTIVE:
            raise _not_found(sid)
        if desktop.kind != "desktop":
            raise illegal_argument(f"session {sid} is not a desktop session")
        appid = new_app_id()
        while self.db.get(f"{sid}/{appid}") is not None:
            appid = new_app_id()
        row = SessionRow(
            key=f"{sid}/{appid}",
            id=sid,
            appid=appid,
            userid=user.name,
            kind=DESKTOP_APP,
            name=_app_name(image),
            image=image,
            status=PENDING,
            created=self.clock(),
            deadline=self.settings.session_expiry,
            pod=_pod_suffix(),
            cores=cores,
            ram=ram,
        )
        self.db.insert(row)
        self.runner.launch(row)
        return _ok(f"{appid}\n")

    def _renew(self, user: User, sid: str) -> None:
        """New deadline = elapsed + expiry, when the expiry exceeds what remains (§6)."""
        rows = [r for r in self.db.rows(user.name, sid) if r.status in ACTIVE]
        if not rows:
            principal = f"PosixPrincipal [uidNumber={posix_id(user.name)}]"
            raise illegal_argument(f"No active job for user {principal} with session {sid}")
        now = self.clock()
        for row in rows:
            if row.start_time is None:
                continue
            used = int(now) - row.start_time
            if self.settings.session_expiry > row.deadline - used:
                self.db.update(row.key, deadline=used + self.settings.session_expiry)

    # -- DELETE ----------------------------------------------------------------------

    async def _delete(self, user: User, sid: str | None, app: bool, appid: str | None) -> Response:
        """Always 200 for a session id, known or not (errors are only logged)."""
        if sid is None:
            raise unsupported("Cannot kill all sessions.")
        if app and appid is None:
            raise unsupported("Cannot kill all desktop-apps.")
        rows = (
            [self._app_row(user, sid, appid)]
            if app and appid is not None
            else [r for r in self.db.rows(user.name, sid) if r.appid is None]
        )
        for row in rows:
            self.db.delete(row.key)
            await self.runner.forget(row)
        return _ok()

    # -- stand-in session pages --------------------------------------------------------

    def _session_page(self, rest: str) -> Response:
        """What a connectURL opens: a small page naming the session (no auth, as ingress)."""
        seg, _, tail = rest.partition("/")
        sid = tail.partition("/")[0]
        kind = _UI_KINDS.get(seg)
        rows = [r for r in self.db.rows(sid=sid) if r.appid is None and r.kind == kind]
        if not rows or rows[0].status != RUNNING:
            raise Fault(404, f"session {sid} not found or not running")
        row = rows[0]
        e = html.escape
        body = (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f"<title>{e(row.kind)} session {e(row.id)}</title></head>\n<body>\n"
            f"<h1>canfarfs emulator: {e(row.kind)} session {e(row.id)}</h1>\n"
            f"<p>Name <b>{e(row.name.lower())}</b>, user {e(row.userid)}, "
            f"image {e(row.image)}, status {e(row.status)}.</p>\n"
            f"<p>This is a stand-in page: the emulator does not run {e(row.kind)} itself.</p>\n"
            "</body></html>\n"
        )
        return Response(body.encode(), 200, media_type="text/html")


async def _params(request: Request) -> Params:
    """Query parameters, then (for a form POST) body parameters, in order."""
    pairs = list(request.query_params.multi_items())
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                raise Fault(413, "request entity too large")
        pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return Params(pairs)


async def _read_log(path: Path | None) -> AsyncIterator[bytes]:
    """The log as it is now (up to its current size), read off the event loop."""
    if path is None:
        return
    try:
        f = await trio.open_file(path, "rb")
    except OSError:  # not written yet (pending), or removed meanwhile
        return
    async with f:
        left = (await trio.to_thread.run_sync(os.fstat, f.fileno())).st_size
        while left > 0:
            data = await f.read(min(left, 64 * 1024))
            if not data:
                break
            left -= len(data)
            yield data


def _relative_path(scope: Scope) -> str:
    """The path below the mount point, whether or not the router kept the prefix."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return path


def _undecodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 16 * 1024**3


@dataclass
class SkahaService:
    """The Skaha emulator: ``app`` (ASGI, mounted at /skaha) and background :meth:`run`."""

    app: ASGIApp
    db: SessionDB
    runner: SessionRunner
    settings: SkahaSettings
    clock: Clock = field(default_factory=Clock)

    async def run(self) -> None:
        """Run sessions (processes, Pending → Running, expiry, clean-up) until cancelled."""
        await self.runner.run()


def build_skaha(config: EmulatorConfig, store: Store) -> SkahaService:
    """Open the session tables; sessions a previous run left active become Failed."""
    settings = SkahaSettings.from_env(os.environ)
    settings.run = settings.run and config.run_sessions
    db = SessionDB(store.db)
    clock = Clock()
    kill_orphans(db.fail_interrupted(clock()))
    runner = SessionRunner(db, config.root, settings, clock)
    api = SkahaAPI(config, db, runner, settings, clock)
    return SkahaService(app=api, db=db, runner=runner, settings=settings, clock=clock)
