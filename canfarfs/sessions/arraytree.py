"""``sessions/arrays/``: each job array as one directory (docs/sessions.md, *Job
arrays*). Paths here are relative to ``arrays/`` ('' is ``arrays/`` itself).

``<name>/status`` counts the replicas by state, ``ids`` lists every session the array
started, ``failed`` the inputs of the replicas that failed, ``logs`` all replicas' logs
with each line prefixed by its replica, ``1``…``N`` link to the replicas' sessions;
closing ``retry`` after writing it (``touch``) launches the failed replicas again, and
``rmdir`` ends every replica.
"""

from __future__ import annotations

import datetime
import logging
import stat
from collections import Counter
from collections.abc import Awaitable, Callable

import trio

from canfarfs import errors
from canfarfs.fs.attrs import Attr
from canfarfs.fs.virtual import VirtualHandle
from canfarfs.sessions.arrays import (
    FINAL_STATES,
    NOT_LAUNCHED,
    RETRY_STATES,
    ArrayRecord,
    Arrays,
    Replica,
)
from canfarfs.sessions.content import SnapshotHandle
from canfarfs.sessions.launch import Launcher
from canfarfs.skaha.models import STATUSES, Session

log = logging.getLogger(__name__)

FILES = ("status", "ids", "failed", "logs", "retry")
DIR_MODE = stat.S_IFDIR | 0o755
FILE_MODE = stat.S_IFREG | 0o644
LINK_MODE = stat.S_IFLNK | 0o777
#: How old an array file's content may be when asked again (seconds).
CONTENT_AGE = 0.5
#: Sessions ended at once by an rmdir, logs fetched at once.
CONCURRENCY = 8

Sessions = Callable[[], Awaitable[dict[str, Session]]]


class RetryHandle:
    """``retry`` opened for writing: what is written is ignored; the close launches
    the failed replicas again, and its error is what close() returns."""

    direct_io = True

    def __init__(self, run: Callable[[], Awaitable[None]]) -> None:
        self._run = run
        self._done = False

    async def read(self, offset: int, size: int) -> bytes:
        return b""

    async def write(self, offset: int, data: bytes) -> int:
        return len(data)

    async def truncate(self, size: int) -> None:
        return None

    async def flush(self) -> None:
        if not self._done:
            self._done = True
            await self._run()

    async def fsync(self) -> None:
        """fsync(): as a close (nothing here is uploaded)."""
        await self.flush()

    async def release(self) -> None:
        return None


class ArraysView:
    """The arrays of ``arrays`` as a directory tree; sessions come from ``sessions``
    (the tree's cached list), ended through ``destroy``, logs fetched with ``logs``."""

    def __init__(
        self,
        arrays: Arrays | None,
        launcher: Launcher,
        *,
        sessions: Sessions,
        logs: Callable[[str], Awaitable[bytes]],
        destroy: Callable[[str], Awaitable[None]],
        launched: Callable[[list[str]], None],
        born: int,
    ) -> None:
        self.arrays = arrays
        self.launcher = launcher
        self._sessions = sessions
        self._logs = logs
        self._destroy = destroy
        self._launched = launched
        self._born = born
        self._content: dict[tuple[str, str], tuple[float, bytes]] = {}
        self._retrying = trio.Lock()

    # -- what is there ---------------------------------------------------------------------

    async def records(self) -> dict[str, ArrayRecord]:
        if self.arrays is None:
            return {}
        await self.arrays.find()
        return self.arrays.by_name()

    async def _record(self, name: str, path: str) -> ArrayRecord:
        record = (await self.records()).get(name)
        if record is None:
            raise errors.NotFound(f"sessions/arrays/{path}")
        return record

    async def states(self, record: ArrayRecord) -> list[tuple[Replica, str]]:
        """Each replica with the state of its latest session (a session the server no
        longer lists keeps the final state last seen, else reads ``Unknown``)."""
        view = await self._sessions()
        out = []
        for r in record.replicas:
            if not r.ids:
                out.append((r, NOT_LAUNCHED))
                continue
            sid = r.ids[-1]
            session = view.get(sid)
            if session is not None and session.status:
                record.last_status[sid] = session.status
                out.append((r, session.status))
            else:
                last = record.last_status.get(sid)
                out.append((r, last if last in FINAL_STATES else "Unknown"))
        return out

    # -- content ---------------------------------------------------------------------------

    async def content(self, name: str, record: ArrayRecord, file: str) -> bytes:
        key = (record.folder, file)
        now = trio.current_time()
        cached = self._content.get(key)
        if cached is not None and now - cached[0] < CONTENT_AGE:
            return cached[1]
        data = await self._make(record, file)
        self._content[key] = (now, data)
        return data

    async def _make(self, record: ArrayRecord, file: str) -> bytes:
        if file == "ids":
            return "".join(f"{sid}\n" for sid in record.ids).encode()
        if file == "retry":
            return b""
        states = await self.states(record)
        if file == "status":
            return status_text(record, states).encode()
        if file == "failed":
            assert self.arrays is not None
            lines = []
            for r, state in states:
                if state in RETRY_STATES:
                    lines += await self.arrays.inputs_of(record, r)
            return "".join(f"{p}\n" for p in lines).encode()
        return await self._all_logs(record)

    async def _all_logs(self, record: ArrayRecord) -> bytes:
        """The latest session's logs of every replica, in replica order, each line
        prefixed ``[k] ``."""
        parts: list[bytes] = [b""] * len(record.replicas)
        limit = trio.CapacityLimiter(CONCURRENCY)

        async def one(i: int, r: Replica) -> None:
            if not r.ids:
                return
            async with limit:
                try:
                    text = await self._logs(r.ids[-1])
                except errors.NotFound:
                    return
            prefix = f"[{r.number}] ".encode()
            parts[i] = b"".join(prefix + line for line in text.splitlines(keepends=True))
            if parts[i] and not parts[i].endswith(b"\n"):
                parts[i] += b"\n"

        async with trio.open_nursery() as nursery:
            for i, r in enumerate(record.replicas):
                nursery.start_soon(one, i, r)
        return b"".join(parts)

    # -- the tree --------------------------------------------------------------------------

    def _dir_attr(self, record: ArrayRecord | None = None) -> Attr:
        mtime = self._born if record is None else _stamp_ns(record.stamp, self._born)
        return Attr(mode=DIR_MODE, size=0, mtime_ns=mtime, nlink=2)

    async def attr(self, path: str) -> Attr:
        parts = path.split("/") if path else []
        if not parts:
            return self._dir_attr()
        record = await self._record(parts[0], path)
        if len(parts) == 1:
            return self._dir_attr(record)
        if len(parts) == 2:
            if parts[1] in FILES:
                data = await self.content(parts[0], record, parts[1])
                return Attr(
                    mode=FILE_MODE, size=len(data), mtime_ns=self._dir_attr(record).mtime_ns
                )
            replica = _replica(record, parts[1])
            if replica is not None and replica.ids:
                size = len(_link(replica))
                return Attr(mode=LINK_MODE, size=size, mtime_ns=self._dir_attr(record).mtime_ns)
        raise errors.NotFound(f"sessions/arrays/{path}")

    async def listdir(self, path: str) -> list[tuple[str, Attr]]:
        parts = path.split("/") if path else []
        if not parts:
            return [(name, self._dir_attr(r)) for name, r in sorted((await self.records()).items())]
        if len(parts) > 1:
            await self.attr(path)  # NotFound if absent
            raise errors.NotADirectory(f"sessions/arrays/{path}")
        record = await self._record(parts[0], path)
        out = [(f, await self.attr(f"{parts[0]}/{f}")) for f in FILES]
        out += [
            (str(r.number), await self.attr(f"{parts[0]}/{r.number}"))
            for r in record.replicas
            if r.ids
        ]
        return out

    async def readlink(self, path: str) -> str:
        parts = path.split("/")
        if len(parts) == 2:
            replica = _replica(await self._record(parts[0], path), parts[1])
            if replica is not None and replica.ids:
                return _link(replica)
        await self.attr(path)
        raise errors.InvalidArgument(f"sessions/arrays/{path} is not a symbolic link")

    async def open(self, path: str, flags: int, writing: bool) -> VirtualHandle:
        parts = path.split("/") if path else []
        if len(parts) != 2:
            await self.attr(path)
            raise errors.IsADirectory(f"sessions/arrays/{path}")
        record = await self._record(parts[0], path)
        if parts[1] == "retry":
            if writing:
                return RetryHandle(lambda: self.retry(parts[0], record))
            return SnapshotHandle(b"")
        if parts[1] not in FILES:
            await self.attr(path)
            raise errors.NotPermitted(f"sessions/arrays/{path} cannot be opened")
        if writing:
            raise errors.NotPermitted(f"sessions/arrays/{path} is read-only")
        self._content.pop((record.folder, parts[1]), None)  # an open reads afresh
        return SnapshotHandle(await self.content(parts[0], record, parts[1]))

    async def touch(self, path: str) -> None:
        parts = path.split("/")
        if len(parts) == 2 and parts[1] == "retry":
            await self.retry(parts[0], await self._record(parts[0], path))
        else:
            await self.attr(path)

    async def retry(self, name: str, record: ArrayRecord) -> None:
        """Launch again the replicas whose latest session failed (or never started)."""
        async with self._retrying:  # two `touch retry` at once relaunch once
            failed = [r.number for r, st in await self.states(record) if st in RETRY_STATES]
            if not failed:
                log.info("array %s: no failed replica to retry", name)
                return
            result = await self.launcher.retry(record, failed)
            self._launched(result.ids)
        self._content = {k: v for k, v in self._content.items() if k[0] != record.folder}
        log.info("array %s: retried replicas %s: %s", name, failed, " ".join(result.ids))
        if result.failures:
            first = result.failures[min(result.failures)]
            raise type(first)(
                f"sessions/arrays/{name}: {len(result.failures)} of {len(failed)} "
                f"retried replicas not launched: {first.message}",
                status=first.status,
            )

    async def unlink(self, path: str) -> None:
        parts = path.split("/") if path else []
        if len(parts) == 2:
            record = await self._record(parts[0], path)
            if parts[1] in FILES:
                return  # so that `rm -r sessions/arrays/<name>` reaches its rmdir
            replica = _replica(record, parts[1])
            if replica is not None and replica.ids:
                await self._destroy(replica.ids[-1])
                return
        await self.attr(path)
        raise errors.IsADirectory(f"sessions/arrays/{path}")

    async def rmdir(self, path: str) -> None:
        parts = path.split("/") if path else []
        if not parts:
            raise errors.NotPermitted("sessions/arrays cannot be removed")
        if len(parts) != 1:
            await self.attr(path)
            raise errors.NotADirectory(f"sessions/arrays/{path}")
        record = await self._record(parts[0], path)
        listed = await self._sessions()
        targets = [sid for sid in record.ids if sid in listed]
        failures: list[errors.CanfarfsError] = []
        limit = trio.CapacityLimiter(CONCURRENCY)

        async def end(sid: str) -> None:
            async with limit:
                try:
                    await self._destroy(sid)
                except errors.CanfarfsError as exc:
                    failures.append(exc)

        async with trio.open_nursery() as nursery:
            for sid in targets:
                nursery.start_soon(end, sid)
        if failures:
            first = failures[0]
            raise type(first)(
                f"sessions/arrays/{path}: {len(failures)} of {len(targets)} sessions were "
                f"not ended: {first.message}",
                status=first.status,
            )
        assert self.arrays is not None
        self.arrays.forget(record)
        log.info("array %s ended: %d sessions", path, len(targets))


def status_text(record: ArrayRecord, states: list[tuple[Replica, str]]) -> str:
    """``8 total: 5 Completed, 2 Running, 1 Failed``, then one line per replica."""
    counts = Counter(state for _, state in states)
    order = [s for s in STATUSES if s in counts] + sorted(s for s in counts if s not in STATUSES)
    head = f"{len(states)} total: " + ", ".join(f"{counts[s]} {s}" for s in order)
    lines = [head]
    for r, state in states:
        if not r.ids:
            lines.append(f"replica {r.number}: {state} ({r.launch_error or 'not launched'})")
            continue
        attempt = f" (attempt {len(r.ids)})" if len(r.ids) > 1 else ""
        lines.append(f"replica {r.number}: {state} {r.ids[-1]}{attempt}")
    return "\n".join(lines) + "\n"


def _replica(record: ArrayRecord, name: str) -> Replica | None:
    if not name.isdigit() or name != str(int(name)):
        return None
    number = int(name)
    return next((r for r in record.replicas if r.number == number), None)


def _link(replica: Replica) -> str:
    return f"../../{replica.ids[-1]}"


def _stamp_ns(stamp: str, default: int) -> int:
    try:
        when = datetime.datetime.strptime(stamp[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return default
    return int(when.timestamp()) * 1_000_000_000
