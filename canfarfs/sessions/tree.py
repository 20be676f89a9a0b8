"""The ``sessions/`` tree (docs/sessions.md): the caller's Skaha sessions as directories,
index directories of symbolic links, the platform's JSON documents, and spec files that
launch sessions when closed. Implements :class:`canfarfs.fs.virtual.VirtualTree`.

Freshness: the session list is cached ``list_ttl`` seconds; file content is at most
``CONTENT_AGE`` (1 s) old when opened (logs: fetched at each open) and as old for
getattr. Specs, their outcomes and what this mount launched live in memory for the life
of the mount.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import time
from dataclasses import dataclass
from typing import Any, Literal

import trio
from pydantic import ValidationError

from canfarfs import errors
from canfarfs.fs.attrs import Attr
from canfarfs.fs.virtual import VirtualHandle
from canfarfs.sessions.arrays import ArcFiles, Arrays
from canfarfs.sessions.arraytree import ArraysView
from canfarfs.sessions.content import ContentCache, Key, LogHandle, SnapshotHandle
from canfarfs.sessions.launch import Launcher
from canfarfs.sessions.memfiles import MemFile, MemFiles, MemHandle
from canfarfs.sessions.specs import describe, is_spec_name, outcome_parts
from canfarfs.skaha.client import SkahaClient
from canfarfs.skaha.models import LAUNCH_KINDS, STATUSES, RegistryAuth, Session

log = logging.getLogger(__name__)

INDEXES = {"by-name": "name", "by-kind": "kind", "by-status": "status"}
PLATFORM = ("images", "context", "stats")
SESSION_FILES = ("info", "status", "events", "logs", "url", "spec")
ARRAYS = "arrays"
RESERVED = frozenset((*INDEXES, *PLATFORM, ARRAYS))
#: Kernel attribute/entry TTLs (seconds).
DIR_TTL = 1.0
FILE_TTL = 0.5
LOG_TTL = 0.5
#: How old cached content may be when only its size is asked for.
CONTENT_AGE = 1.0
LOG_AGE = 0.5
#: Sessions ended through the mount stay hidden while the server still lists them.
HIDE_FOR = 120.0
#: Sessions launched through the mount show before the server lists them.
FRESH_FOR = 30.0
#: Longest a listing of sessions/ waits for a platform document.
LISTING_WAIT = 2.0
#: Cached content unused this long is dropped.
KEEP_CONTENT = 30.0
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
DIR_MODE = stat.S_IFDIR | 0o755
#: Files in a session directory are 0644 so ``rm -r`` does not ask about each one;
#: writing to them fails with EPERM.
SESSION_FILE_MODE = stat.S_IFREG | 0o644
PLATFORM_MODE = stat.S_IFREG | 0o444
MEM_MODE = stat.S_IFREG | 0o644

What = Literal[
    "root", "index", "indexdir", "link", "session", "sfile", "platform", "mem", "outcome", "array"
]


@dataclass(frozen=True)
class Entry:
    """What a path names."""

    what: What
    sid: str = ""
    name: str = ""


def _safe_component(text: str | None) -> bool:
    if not text:
        return False
    return (
        text not in (".", "..")
        and "/" not in text
        and "\0" not in text
        and len(text.encode()) <= 255
    )


#: How recent the reads of all of a session's files make an rmdir a move's (EBUSY once).
MOVE_WINDOW = 60.0
#: A spec's name leaves room for its companions' suffix (``.error``) within NAME_MAX.
SPEC_NAME_MAX = 255 - len(".error")


def _check_name_length(path: str) -> None:
    """ENAMETOOLONG for a name whose ``.ids``/``.error`` companion would not fit."""
    size = len(path.encode(errors="surrogateescape"))
    if size > SPEC_NAME_MAX:
        raise errors.NameTooLong(
            f"sessions/: a name of {size} bytes leaves no room for its .ids and .error "
            f"(at most {SPEC_NAME_MAX} bytes)"
        )


class LaunchFailed(errors.CanfarfsError):
    """Reading the ``.ids`` of a spec whose launch started nothing: its errno."""

    def __init__(self, message: str, *, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


class SessionsTree:
    """The caller's sessions on ``client``'s Skaha service, as a directory tree.

    ``user`` is the account the mount acts for; ``registry`` is a configured
    ``(username, secret)`` for private images, used when a spec has no ``registry:`` of
    its own.
    """

    def __init__(
        self,
        client: SkahaClient,
        *,
        user: str,
        registry: tuple[str, str] | None = None,
        list_ttl: float = 2.0,
        arc: ArcFiles | None = None,
    ) -> None:
        self._read_at: dict[tuple[str, str], float] = {}
        self._removed_at: dict[tuple[str, str], float] = {}
        self._armed: dict[str, float] = {}
        self.client = client
        self.user = user
        self.list_ttl = list_ttl
        auth = None
        if registry is not None:
            try:
                auth = RegistryAuth.model_validate({"username": registry[0], "secret": registry[1]})
            except ValidationError as exc:
                raise errors.InvalidArgument(
                    f"configured registry credentials: {describe(exc)}"
                ) from None
        self.arrays = Arrays(arc, user) if arc is not None else None
        self.launcher = Launcher(client, auth, self.arrays)
        self.files = MemFiles(self._launch)
        self.content = ContentCache(self._fetch)
        self._listing: dict[str, Session] = {}
        self._listed_at: float | None = None
        self._list_lock = trio.Lock()
        self._hidden: dict[str, float] = {}
        #: Launched here, not listed by the server yet: id → when.
        self._awaiting: dict[str, float] = {}
        self._first_seen: dict[str, int] = {}
        self._warned: set[str] = set()
        self._born = time.time_ns()
        self.array_view = ArraysView(
            self.arrays,
            self.launcher,
            sessions=self.sessions,
            logs=self.client.logs,
            destroy=self._destroy,
            launched=self._note_launched,
            born=self._born,
        )

    # -- the session list ------------------------------------------------------------------

    async def sessions(self, *, fresh: bool = False) -> dict[str, Session]:
        """Visible sessions by id: the server's list (at most ``list_ttl`` old), less
        those ended here, plus those launched here that it does not list yet."""
        start = trio.current_time()

        def stale() -> bool:
            if self._listed_at is None:
                return True
            if fresh:
                return self._listed_at < start
            return trio.current_time() - self._listed_at >= self.list_ttl

        if stale():
            async with self._list_lock:
                if stale():
                    await self._refresh_list()
        now = trio.current_time()
        view = {sid: s for sid, s in self._listing.items() if sid not in self._hidden}
        for sid, at in self._awaiting.items():
            rec = self.launcher.launched.get(sid)
            if (
                rec is not None
                and sid not in view
                and sid not in self._hidden
                and now - at < FRESH_FOR
            ):
                view[sid] = Session.model_validate(
                    {"id": sid, "name": rec.name, "type": rec.kind, "status": "Pending"}
                )
        return view

    async def _refresh_list(self) -> None:
        listing: dict[str, Session] = {}
        for raw in await self.client.list_raw():
            sid = raw.get("id")
            if not isinstance(sid, str) or not SAFE_ID.fullmatch(sid) or sid in RESERVED:
                if repr(sid) not in self._warned:
                    self._warned.add(repr(sid))
                    log.warning("ignoring a session with an unusable id: %r", sid)
                continue
            try:
                session = Session.from_json(raw)
            except ValueError:
                continue
            if session.appid is None:  # desktop-apps share their desktop's id
                listing[sid] = session
        now = trio.current_time()
        self._listing, self._listed_at = listing, now
        wall = time.time_ns()
        for sid in listing:
            self._first_seen.setdefault(sid, wall)
        for sid in [s for s, t in self._hidden.items() if s not in listing or now - t > HIDE_FOR]:
            del self._hidden[sid]
        for sid in [s for s, t in self._awaiting.items() if s in listing or now - t > FRESH_FOR]:
            del self._awaiting[sid]
        self.launcher.forget(set(listing), now - FRESH_FOR)
        keep = set(listing) | set(self.launcher.launched)
        for sid in [s for s in self._first_seen if s not in keep]:
            del self._first_seen[sid]
        self.content.prune(keep, now - KEEP_CONTENT)

    def _invalidate(self) -> None:
        self._listed_at = None

    def index(self, view: dict[str, Session], which: str) -> dict[str, list[str]]:
        """``by-name``/``by-kind``/``by-status``: key → ids (every kind and the usual
        statuses are always present, so scripts can list an empty one)."""
        field_name = INDEXES[which]
        out: dict[str, list[str]] = {}
        if which == "by-kind":
            out = {k: [] for k in LAUNCH_KINDS}
        elif which == "by-status":
            out = {s: [] for s in STATUSES}
        for sid, session in view.items():
            key = getattr(session, field_name)
            if _safe_component(key):
                out.setdefault(key, []).append(sid)
        return out

    # -- resolving paths ----------------------------------------------------------------------

    async def _resolve(self, path: str) -> Entry:
        parts = path.split("/") if path else []
        if not parts:
            return Entry("root")
        head = parts[0]
        if head == ARRAYS:
            return Entry("array", name="/".join(parts[1:]))
        if head in INDEXES:
            if len(parts) == 1:
                return Entry("index", name=head)
            idx = self.index(await self.sessions(), head)
            ids = idx.get(parts[1])
            if ids is not None and len(parts) == 2:
                return Entry("indexdir", name=f"{head}/{parts[1]}")
            if ids is not None and len(parts) == 3 and parts[2] in ids:
                return Entry("link", sid=parts[2])
            raise errors.NotFound(f"sessions/{path}")
        if head in PLATFORM and len(parts) == 1:
            return Entry("platform", name=head)
        if len(parts) == 1 and head in self.files.files:
            return Entry("mem", name=head)
        outcome = outcome_parts(head) if len(parts) == 1 else None
        if outcome is not None:
            f = self.files.files.get(outcome[0])
            if f is not None and self._outcome_text(f, outcome[1]) is not None:
                return Entry("outcome", name=head)
        view = await self.sessions()
        if head in view:
            if len(parts) == 1:
                return Entry("session", sid=head)
            if len(parts) == 2 and parts[1] in self._session_files(head, view[head]):
                return Entry("sfile", sid=head, name=parts[1])
        raise errors.NotFound(f"sessions/{path}")

    def _session_files(self, sid: str, session: Session) -> list[str]:
        names = ["info", "status", "events", "logs"]
        if session.connect_url:
            names.append("url")
        if sid in self.launcher.launched:
            names.append("spec")
        return names

    @staticmethod
    def _outcome_text(f: MemFile, suffix: str) -> bytes | None:
        if suffix == ".ids":
            if not f.ids and f.failed_errno is not None and f.error:
                return b""  # there, so that reading it fails with the launch's errno
            return "".join(f"{i}\n" for i in f.ids).encode() if f.ids else None
        return f.error.encode() if f.error else None

    # -- content --------------------------------------------------------------------------

    async def _fetch(self, key: Key) -> dict[Key, bytes]:
        sid, name = key
        if not sid:
            return {key: _pretty(await self._platform(name))}
        try:
            if name in ("info", "status", "url"):
                raw = await self.client.info_raw(sid)
                if sid in self._listing:  # the freshest view wins in the indexes too
                    with contextlib.suppress(ValueError):
                        self._listing[sid] = Session.from_json(raw)
                status = raw.get("status") or "Unknown"
                url = raw.get("connectURL") or ""
                return {
                    (sid, "info"): _pretty(raw),
                    (sid, "status"): f"{status}\n".encode(),
                    (sid, "url"): f"{url}\n".encode() if url else b"",
                }
            if name == "events":
                return {key: (await self.client.events(sid)).encode()}
            if name == "logs":
                return {key: await self.client.logs(sid)}
            if name == "spec":
                rec = self.launcher.launched.get(sid)
                return {key: rec.text if rec is not None else b""}
        except errors.NotFound:
            self._invalidate()
            self.content.drop(sid)
            raise
        raise errors.NotFound(f"sessions/{sid}/{name}")

    async def _platform(self, name: str) -> Any:
        if name == "images":
            return await self.client.images()
        if name == "context":
            return await self.client.context()
        return await self.client.stats()

    async def _file_attr(self, sid: str, name: str, mode: int) -> Attr:
        snap = await self.content.get((sid, name), LOG_AGE if name == "logs" else CONTENT_AGE)
        return Attr(mode=mode, size=len(snap.data), mtime_ns=snap.mtime_ns)

    async def _platform_attr(self, name: str) -> Attr:
        return await self._file_attr("", name, PLATFORM_MODE)

    async def _platform_attrs(self) -> dict[str, Attr]:
        """The platform files' attributes for a listing, fetched together; one that does
        not answer within LISTING_WAIT shows its last known size (a listing never waits
        for a slow stats backend; opening the file reports the error)."""
        out: dict[str, Attr] = {}

        async def one(name: str) -> None:
            with trio.move_on_after(LISTING_WAIT), contextlib.suppress(errors.CanfarfsError):
                out[name] = await self._platform_attr(name)
                return
            snap = self.content.peek(("", name))
            out[name] = Attr(
                mode=PLATFORM_MODE,
                size=len(snap.data) if snap else 0,
                mtime_ns=snap.mtime_ns if snap else self._born,
            )

        async with trio.open_nursery() as nursery:
            for name in PLATFORM:
                nursery.start_soon(one, name)
        return out

    # -- VirtualTree: reading -----------------------------------------------------------------

    async def attr(self, path: str) -> Attr:
        e = await self._resolve(path)
        return await self._attr_of(e, path)

    async def _attr_of(self, e: Entry, path: str) -> Attr:
        if e.what == "array":
            return await self.array_view.attr(e.name)
        if e.what in ("root", "index", "indexdir"):
            return Attr(mode=DIR_MODE, size=0, mtime_ns=self._born, nlink=2)
        if e.what == "session":
            return self._session_attr(e.sid, (await self.sessions()).get(e.sid))
        if e.what == "link":
            return Attr(mode=stat.S_IFLNK | 0o777, size=len(f"../../{e.sid}"), mtime_ns=self._born)
        if e.what == "sfile":
            return await self._file_attr(e.sid, e.name, SESSION_FILE_MODE)
        if e.what == "platform":
            return await self._platform_attr(e.name)
        if e.what == "mem":
            f = self.files.files[e.name]
            return Attr(mode=MEM_MODE, size=len(f.data), mtime_ns=f.mtime_ns)
        base, suffix = outcome_parts(e.name) or ("", "")
        f = self.files.files[base]
        return Attr(
            mode=MEM_MODE, size=len(self._outcome_text(f, suffix) or b""), mtime_ns=f.mtime_ns
        )

    def _session_attr(self, sid: str, session: Session | None) -> Attr:
        started = session.start_time if session is not None else None
        mtime = int(started.timestamp() * 1e9) if started else self._first_seen.get(sid, self._born)
        return Attr(mode=DIR_MODE, size=0, mtime_ns=mtime, nlink=2)

    async def attr_ttl(self, path: str) -> float:
        parts = path.split("/") if path else []
        if parts and parts[0] == ARRAYS:
            return FILE_TTL if len(parts) == 3 else DIR_TTL
        if len(parts) == 1 and (parts[0] in self.files.files or outcome_parts(parts[0])):
            return 0.0
        if len(parts) == 2 and parts[0] not in INDEXES:
            return LOG_TTL if parts[1] == "logs" else FILE_TTL
        if len(parts) == 1 and parts[0] in PLATFORM:
            return FILE_TTL
        return DIR_TTL

    async def listdir(self, path: str) -> list[tuple[str, Attr]]:
        e = await self._resolve(path)
        if e.what == "root":
            return await self._list_root()
        if e.what == "array":
            return await self.array_view.listdir(e.name)
        if e.what == "index":
            idx = self.index(await self.sessions(), e.name)
            return [
                (k, Attr(mode=DIR_MODE, size=0, mtime_ns=self._born, nlink=2)) for k in sorted(idx)
            ]
        if e.what == "indexdir":
            which, key = e.name.split("/", 1)
            ids = self.index(await self.sessions(), which).get(key, [])
            return [(sid, await self._attr_of(Entry("link", sid=sid), "")) for sid in sorted(ids)]
        if e.what == "session":
            view = await self.sessions()
            return [
                (n, await self._file_attr(e.sid, n, SESSION_FILE_MODE))
                for n in self._session_files(e.sid, view[e.sid])
            ]
        raise errors.NotADirectory(f"sessions/{path}")

    async def _list_root(self) -> list[tuple[str, Attr]]:
        view = await self.sessions()
        out: list[tuple[str, Attr]] = [
            (name, Attr(mode=DIR_MODE, size=0, mtime_ns=self._born, nlink=2))
            for name in (*INDEXES, ARRAYS)
        ]
        platform = await self._platform_attrs()
        out += [(name, platform[name]) for name in PLATFORM]
        for sid in sorted(view):
            out.append((sid, self._session_attr(sid, view[sid])))
        for name in sorted(self.files.files):
            f = self.files.files[name]
            out.append((name, Attr(mode=MEM_MODE, size=len(f.data), mtime_ns=f.mtime_ns)))
            if f.is_spec:
                for suffix in (".ids", ".error"):
                    text = self._outcome_text(f, suffix)
                    if text is not None:
                        out.append(
                            (
                                name + suffix,
                                Attr(mode=MEM_MODE, size=len(text), mtime_ns=f.mtime_ns),
                            )
                        )
        return out

    async def readlink(self, path: str) -> str:
        e = await self._resolve(path)
        if e.what == "array":
            return await self.array_view.readlink(e.name)
        if e.what != "link":
            raise errors.InvalidArgument(f"sessions/{path} is not a symbolic link")
        return f"../../{e.sid}"

    async def open(self, path: str, flags: int) -> VirtualHandle:
        e = await self._resolve(path)
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY
        if e.what == "array":
            return await self.array_view.open(e.name, flags, writing)
        if e.what == "mem":
            f = self.files.files[e.name]
            handle = MemHandle(self.files, f, writable=writing, append=bool(flags & os.O_APPEND))
            if writing and flags & os.O_TRUNC:
                await handle.truncate(0)
            return handle
        if e.what in ("root", "index", "indexdir", "session"):
            raise errors.IsADirectory(f"sessions/{path}")
        if writing or flags & os.O_TRUNC:
            raise errors.NotPermitted(f"sessions/{path} is read-only")
        if e.what == "outcome":
            base, suffix = outcome_parts(e.name) or ("", "")
            f = self.files.files[base]
            if suffix == ".ids" and not f.ids and f.failed_errno is not None and f.error:
                raise LaunchFailed(
                    f"sessions/{base} was not launched: see sessions/{base}.error",
                    errno=f.failed_errno,
                )
            return SnapshotHandle(self._outcome_text(f, suffix) or b"")
        if e.what == "platform":
            return SnapshotHandle((await self.content.get(("", e.name), CONTENT_AGE)).data)
        if e.what == "sfile":
            self._note(self._read_at, e.sid, e.name)
            # Within CONTENT_AGE of the last fetch (the size stat showed), an open reuses
            # that content: `ls -l` then `cat`, or a script polling status, costs no
            # request. Logs are fetched at each open, so `cat logs` is always current.
            key = (e.sid, e.name)
            snap = await self.content.get(key, 0.0 if e.name == "logs" else CONTENT_AGE)
            if e.name == "logs":
                return LogHandle(snap, lambda: self.content.get(key, LOG_AGE), LOG_AGE)
            return SnapshotHandle(snap.data)
        raise errors.NotPermitted(f"sessions/{path} cannot be opened")

    # -- VirtualTree: changing ----------------------------------------------------------------

    async def _launch(self, f: MemFile) -> None:
        try:
            await self.launcher(f)
        finally:
            if f.ids:
                now = trio.current_time()
                self._awaiting.update((sid, now) for sid in f.ids)
                self._invalidate()

    def _note_launched(self, ids: list[str]) -> None:
        now = trio.current_time()
        self._awaiting.update((sid, now) for sid in ids)
        self._invalidate()

    async def create(self, path: str, flags: int) -> VirtualHandle:
        if path.startswith(f"{ARRAYS}/"):
            await self._resolve(path)  # NotFound for a name that is not there
            raise errors.NotPermitted(f"sessions/{path}: files cannot be made in arrays/")
        _check_name_length(path)
        if "/" in path or not self.files.acceptable(path) or path in RESERVED:
            raise errors.NotPermitted(
                f"sessions/{path}: only spec files (*.yaml, *.yml, *.json) can be created here"
            )
        f = self.files.create(path, exclusive=bool(flags & os.O_EXCL))
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY
        return MemHandle(
            self.files, f, writable=writing, append=bool(flags & os.O_APPEND), wrote=True
        )

    async def unlink(self, path: str) -> None:
        e = await self._resolve(path)
        if e.what == "array":
            await self.array_view.unlink(e.name)
        elif e.what == "mem":
            self.files.remove(e.name)
        elif e.what == "outcome":
            base, suffix = outcome_parts(e.name) or ("", "")
            f = self.files.files[base]
            if suffix == ".ids":
                f.ids, f.failed_errno = [], None
            else:
                f.error, f.failed_errno = None, None
        elif e.what == "sfile":
            self._note(self._removed_at, e.sid, e.name)
            return  # so that `rm -r sessions/<id>` reaches its rmdir (docs/sessions.md)
        elif e.what == "link":
            await self._destroy(e.sid)
        elif e.what in ("session", "root", "index", "indexdir"):
            raise errors.IsADirectory(f"sessions/{path}")
        else:
            raise errors.NotPermitted(f"sessions/{path} cannot be removed")

    async def rmdir(self, path: str) -> None:
        parts = path.split("/")
        if len(parts) == 2 and parts[0] in INDEXES:
            # An index directory goes away by itself once empty (rm -r of by-name/x
            # removes its links first), so an absent one is accepted too.
            if self.index(await self.sessions(fresh=True), parts[0]).get(parts[1]):
                raise errors.NotEmpty(f"sessions/{path}")
            return
        e = await self._resolve(path)
        if e.what == "array":
            await self.array_view.rmdir(e.name)
        elif e.what == "session":
            await self._refuse_a_move(e.sid)
            await self._destroy(e.sid)
        elif e.what in ("root", "index"):
            raise errors.NotPermitted(f"sessions/{path} cannot be removed")
        else:
            raise errors.NotADirectory(f"sessions/{path}")

    async def _refuse_a_move(self, sid: str) -> None:
        """``mv sessions/<id> elsewhere`` copies every file of the session, then removes
        the source the way ``rm -r`` does (each file, then the directory), which would
        end the session. A session whose files were all just read and then removed is
        taken for such a move: that rmdir fails (EBUSY, and mv exits non-zero with the
        session still running); an rmdir within MOVE_WINDOW after that ends it. A plain
        rmdir, or rm -r of a session nobody just read, ends it at once
        (docs/sessions.md)."""
        now = trio.current_time()
        armed = self._armed.pop(sid, None)
        if armed is not None and now - armed < MOVE_WINDOW:
            return
        view = await self.sessions()
        if sid not in view:
            return
        names = self._session_files(sid, view[sid])

        def recent(times: dict[tuple[str, str], float]) -> bool:
            return all(now - times.get((sid, n), -MOVE_WINDOW) < MOVE_WINDOW for n in names)

        if recent(self._read_at) and recent(self._removed_at):
            self._armed[sid] = now
            raise errors.Busy(
                f"sessions/{sid} was just copied (mv?), so it was not ended: "
                f"rmdir it again to end it"
            )

    @staticmethod
    def _note(times: dict[tuple[str, str], float], sid: str, name: str) -> None:
        now = trio.current_time()
        if len(times) > 10_000:
            for k in [k for k, t in times.items() if now - t >= MOVE_WINDOW]:
                del times[k]
        times[(sid, name)] = now

    async def _destroy(self, sid: str) -> None:
        await self.client.destroy(sid)
        log.info("destroyed session %s", sid)
        self._hidden[sid] = trio.current_time()
        self._awaiting.pop(sid, None)
        self.content.drop(sid)
        self._invalidate()

    async def mkdir(self, path: str) -> None:
        raise errors.NotPermitted(f"sessions/{path}: directories cannot be made in sessions/")

    async def rename(self, src: str, dst: str) -> None:
        if "/" in src or src not in self.files.files:
            await self._resolve(src)  # NotFound if absent
            raise errors.NotPermitted(f"sessions/{src} cannot be renamed")
        _check_name_length(dst)
        if "/" in dst or not self.files.acceptable(dst) or dst in RESERVED:
            raise errors.NotPermitted(
                f"sessions/{dst}: only spec files (*.yaml, *.yml, "
                "*.json) and editor files can be named so"
            )
        if src == dst:
            return
        f = self.files.rename(src, dst)
        if is_spec_name(dst) and f.dirty:
            await self._launch(f)

    async def touch(self, path: str) -> None:
        e = await self._resolve(path)
        if e.what == "array":
            await self.array_view.touch(e.name)
        elif e.what == "session":
            await self.client.renew(e.sid)
            self.content.drop(e.sid)
        elif e.what == "mem":
            self.files.files[e.name].touch()

    async def truncate(self, path: str, size: int) -> None:
        e = await self._resolve(path)
        if e.what == "array" and e.name.endswith("/retry"):
            await self.array_view.attr(e.name)
            return  # `echo > retry`: what is written is ignored
        if e.what != "mem":
            raise errors.NotPermitted(f"sessions/{path} is read-only")
        self.files.resize(self.files.files[e.name], size)

    # -- VirtualTree: the rest of the contract (mostly refusals) ------------------------------

    async def lookup(self, parent: str, name: str) -> Attr:
        return await self.attr(f"{parent}/{name}" if parent else name)

    def unlinked_attr(self, handle: VirtualHandle) -> Attr | None:
        return None  # a file whose name is gone is gone for getattr too

    async def mknod(self, path: str) -> None:
        raise errors.NotPermitted("sessions/ specs are written with open(), not mknod")

    async def symlink(self, path: str, target: str) -> None:
        raise errors.NotPermitted("sessions/ holds only the server's sessions and specs")

    async def moved_anyway(self, src: str) -> bool:
        """A spec renamed to its launching name moved even when the launch failed."""
        try:
            await self.attr(src)
        except errors.NotFound:
            return True
        return False

    def companions(self, path: str) -> list[str]:
        return [path + ".ids", path + ".error"]

    async def chmod(self, path: str, mode: int) -> None:
        if mode != stat.S_IMODE((await self.attr(path)).mode):  # the same mode (vim, cp -p): fine
            raise errors.NotPermitted("sessions/ entries have fixed permissions")

    async def utimens(self, path: str, mtime_ns: int | None) -> None:
        await self.touch(path)  # touch sessions/<id> renews it

    async def getxattr(self, path: str, name: str) -> bytes:
        raise errors.NoAttribute(f"sessions/{path} has no extended attributes")

    async def listxattr(self, path: str) -> list[str]:
        return []

    async def setxattr(self, path: str, name: str, value: bytes) -> None:
        # cp -p, vim: ACLs unsupported, so they fall back to fchmod
        raise errors.NotSupported(f"sessions/{path} holds no extended attributes")

    async def removexattr(self, path: str, name: str) -> None:
        raise errors.NotPermitted(f"sessions/{path} holds no extended attributes")

    async def statfs(self) -> tuple[int, int]:
        return (0, 0)  # sessions/ takes no space of the user's allocation


def _pretty(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
