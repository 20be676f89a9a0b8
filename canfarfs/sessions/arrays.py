"""Job arrays (docs/sessions.md, *Job arrays*): a headless spec with ``inputs`` has its
globs expanded through the mount's own view of arc, the matches shared out over the
replicas (``chunk`` or ``stripe``, exactly as the ``canfar`` client's
``canfar.helpers.distributed``), one manifest per replica written under the user's arc
home, and each replica told where its manifest is in ``INPUTS_FILE``.

:class:`Arrays` remembers the arrays this mount launched, keyed by their folder; the
record is also written beside the manifests (``array.json``, no secrets) so a later
mount finds the array again. FUSE-free: arc is reached through :class:`ArcFiles`.
"""

from __future__ import annotations

import datetime
import fnmatch
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import trio
from pydantic import ValidationError

from canfarfs import errors
from canfarfs.skaha.models import SessionSpec

log = logging.getLogger(__name__)

Split = Literal["chunk", "stripe"]
#: Where arrays keep their manifests, under the user's arc home.
ARRAYS_DIR = ".canfarfs/arrays"
RECORD_NAME = "array.json"
#: What a session sees arc as.
ARC_PREFIX = "/arc/"
#: Listings made at once while expanding a glob.
LISTING_CONCURRENCY = 8
#: Manifests written at once.
WRITE_CONCURRENCY = 8
#: The states a retry launches again: the replica failed, or was never launched.
NOT_LAUNCHED = "NotLaunched"
RETRY_STATES = frozenset({"Failed", "Error", NOT_LAUNCHED})
#: States a session keeps once it has ended (remembered when the server forgets it).
FINAL_STATES = frozenset({"Completed", "Succeeded", "Failed", "Error"})
_MAGIC = re.compile(r"[*?\[]")


class ArcFiles(Protocol):
    """What job arrays need of arc. Paths are relative to arc's root (``home/me/x``),
    errors are :mod:`canfarfs.errors`; writes are durable when they return."""

    async def entries(self, path: str) -> list[tuple[str, bool]]:
        """``(name, is a directory)`` of each child; NotFound/NotADirectory."""

    async def exists(self, path: str) -> bool: ...

    async def makedirs(self, path: str) -> None:
        """Make ``path`` and its missing parents (existing ones are fine)."""

    async def mkdir(self, path: str) -> None:
        """Make ``path``; AlreadyExists if it is there."""

    async def write(self, path: str, data: bytes) -> None: ...

    async def read(self, path: str) -> bytes: ...


# -- sharing out -------------------------------------------------------------------------


def share(items: Sequence[str], replica: int, total: int, how: Split) -> list[str]:
    """Replica ``replica``'s (1-based) share of ``items`` among ``total`` replicas, as
    ``canfar.helpers.distributed.chunk``/``stripe`` give it (chunk: contiguous, the last
    replica takes the remainder; stripe: every ``total``-th item)."""
    if not 1 <= replica <= total:
        raise ValueError(f"replica {replica} is not in 1..{total}")
    if how == "stripe":
        return list(items[replica - 1 :: total])
    if len(items) < total:
        return [items[replica - 1]] if replica <= len(items) else []
    size = len(items) // total
    start = (replica - 1) * size
    return list(items[start : start + size if replica < total else len(items)])


def shares(items: Sequence[str], replicas: int, how: Split) -> list[list[str]]:
    """Every replica's share. An array never has more replicas than inputs: the surplus
    would have nothing to do, so it is not launched (docs/sessions.md)."""
    total = min(replicas, len(items))
    return [share(items, r, total, how) for r in range(1, total + 1)]


# -- globs -------------------------------------------------------------------------------


async def expand(globs: Iterable[str], arc: ArcFiles) -> list[str]:
    """Every path the globs match, as sessions see them (``/arc/…``), sorted, each once.

    Shell rules per component (``*``, ``?``, ``[…]``; a leading ``.`` only matched by a
    pattern that starts with one); ``**`` is zero or more directories. Directories match
    too, as they do in the shell. A path holding a newline is refused: a manifest has
    one path per line.
    """
    found: set[str] = set()
    for glob in globs:
        found |= await _match(arc, glob[len(ARC_PREFIX) :].split("/"))
    for rel in found:
        if "\n" in rel or "\r" in rel:
            raise errors.InvalidArgument(
                f"inputs: {ARC_PREFIX}{rel!r} holds a line break, which a manifest (one "
                "path a line) cannot hold; rename it or narrow the glob"
            )
    return sorted(ARC_PREFIX + rel for rel in found)


async def _match(arc: ArcFiles, parts: list[str]) -> set[str]:
    current: dict[str, bool] = {"": True}  # path → known to exist
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            below = await _many(
                arc, list(current), functools.partial(_descendants, arc, files_too=last)
            )
            current = dict(current) | {p: True for p in below}
        elif not _MAGIC.search(part):
            current = {_join(p, part): False for p in current}
        else:

            async def children(p: str, part: str = part, last: bool = last) -> list[str]:
                return [
                    _join(p, name)
                    for name, is_dir in await _entries(arc, p)
                    if (last or is_dir)
                    and (part.startswith(".") or not name.startswith("."))
                    and fnmatch.fnmatchcase(name, part)
                ]

            current = {p: True for p in await _many(arc, list(current), children)}
    unknown = [p for p, known in current.items() if not known]
    there = set(await _many(arc, unknown, lambda p: _if_exists(arc, p)))
    return {p for p, known in current.items() if p and (known or p in there)}


async def _if_exists(arc: ArcFiles, path: str) -> list[str]:
    return [path] if await arc.exists(path) else []


async def _descendants(arc: ArcFiles, path: str, files_too: bool) -> list[str]:
    """Everything below ``path`` that ``**`` reaches (not hidden): directories only, or
    files too when ``**`` ends the glob."""
    out: list[str] = []
    pending = [path]
    while pending:
        here = pending.pop()
        for name, is_dir in await _entries(arc, here):
            if name.startswith("."):
                continue
            if is_dir:
                pending.append(_join(here, name))
            if is_dir or files_too:
                out.append(_join(here, name))
    return out


async def _entries(arc: ArcFiles, path: str) -> list[tuple[str, bool]]:
    try:
        return await arc.entries(path)
    except (errors.NotFound, errors.NotADirectory):
        return []


async def _many(
    arc: ArcFiles, paths: list[str], each: Callable[[str], Awaitable[list[str]]]
) -> list[str]:
    """``each(path)`` for every path, at most LISTING_CONCURRENCY at once, joined."""
    results: list[list[str]] = [[] for _ in paths]
    limit = trio.CapacityLimiter(LISTING_CONCURRENCY)

    async def one(i: int, path: str) -> None:
        async with limit:
            results[i] = await each(path)

    async with trio.open_nursery() as nursery:
        for i, path in enumerate(paths):
            nursery.start_soon(one, i, path)
    return [p for r in results for p in r]


def _join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


# -- arrays ------------------------------------------------------------------------------


@dataclass
class Replica:
    """One replica of an array: its share, its manifest, and its sessions (attempts)."""

    number: int
    manifest: str  # as sessions see it: /arc/home/me/.canfarfs/arrays/x/1.txt
    ids: list[str] = field(default_factory=list)
    #: Its inputs; None until read back from the manifest (an array found at start).
    inputs: list[str] | None = None
    #: Why its last launch started nothing.
    launch_error: str | None = None


@dataclass
class ArrayRecord:
    """An array: the spec it came from, where its manifests are, and its replicas."""

    spec: SessionSpec
    folder: str  # arc path of the manifests' folder
    stamp: str
    split: Split
    replicas: list[Replica]
    inputs: int
    #: Last status seen per session id, kept once the server no longer lists it.
    last_status: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ids(self) -> list[str]:
        return [sid for r in self.replicas for sid in r.ids]

    def extra_env(self) -> dict[int, dict[str, str]]:
        return {r.number: {"INPUTS_FILE": r.manifest} for r in self.replicas}

    def document(self) -> dict[str, Any]:
        """``array.json``: everything but the registry secret."""
        return {
            "name": self.name,
            "stamp": self.stamp,
            "split": self.split,
            "inputs": self.inputs,
            "spec": self.spec.model_dump(mode="json", exclude={"registry"}, exclude_none=True),
            "replicas": [
                {"replica": r.number, "manifest": r.manifest, "ids": r.ids} for r in self.replicas
            ],
        }


def stamp_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


class Arrays:
    """The job arrays of ``user``'s arc home: planned, launched and found again."""

    def __init__(self, arc: ArcFiles, user: str) -> None:
        self.arc = arc
        self.user = user
        self.home = f"home/{user}/{ARRAYS_DIR}"
        #: Arrays by folder name (``<name>-<stamp>``), in launch order.
        self.records: dict[str, ArrayRecord] = {}
        self._found = False
        self._finding = trio.Lock()

    async def plan(self, spec: SessionSpec) -> ArrayRecord:
        """Expand the spec's inputs, share them out and write the manifests (durably):
        the record of an array ready to launch. InvalidArgument when nothing matches;
        the storage's error (EDQUOT, …) when the manifests cannot be written."""
        assert spec.inputs is not None
        inputs = await expand(spec.inputs, self.arc)
        if not inputs:
            raise errors.InvalidArgument(
                f"inputs: nothing matches {', '.join(spec.inputs)} (through this mount's "
                "view of arc); nothing was launched"
            )
        how: Split = spec.split or "chunk"
        parts = shares(inputs, spec.replicas, how)
        if len(parts) < spec.replicas:
            spec = spec.model_copy(update={"replicas": len(parts)})
        folder, stamp = await self._new_folder(spec.name)
        record = ArrayRecord(
            spec=spec,
            folder=folder,
            stamp=stamp,
            split=how,
            inputs=len(inputs),
            replicas=[
                Replica(n, f"{ARC_PREFIX}{folder}/{n}.txt", inputs=part)
                for n, part in enumerate(parts, start=1)
            ],
        )
        limit = trio.CapacityLimiter(WRITE_CONCURRENCY)

        async def write(r: Replica) -> None:
            async with limit:
                text = "".join(f"{p}\n" for p in r.inputs or [])
                await self.arc.write(f"{folder}/{r.number}.txt", text.encode())

        async with trio.open_nursery() as nursery:
            for r in record.replicas:
                nursery.start_soon(write, r)
        return record

    async def _new_folder(self, name: str) -> tuple[str, str]:
        await self.arc.makedirs(self.home)
        stamp = stamp_now()
        for attempt in range(1, 100):
            unique = stamp if attempt == 1 else f"{stamp}-{attempt}"
            folder = f"{self.home}/{name}-{unique}"
            try:
                await self.arc.mkdir(folder)
            except errors.AlreadyExists:
                continue
            return folder, unique
        raise errors.AlreadyExists(f"{self.home}/{name}-{stamp}: 99 arrays in one second")

    async def keep(self, record: ArrayRecord) -> None:
        """Remember ``record`` and write its ``array.json`` (a failure is logged: the
        array runs, a later mount just will not find it)."""
        self.records[record.folder.rpartition("/")[2]] = record
        try:
            await self.arc.write(f"{record.folder}/{RECORD_NAME}", _encode(record.document()))
        except errors.CanfarfsError as exc:
            log.warning("array %s: its record could not be written: %s", record.name, exc)

    def forget(self, record: ArrayRecord) -> None:
        self.records.pop(record.folder.rpartition("/")[2], None)

    def by_name(self) -> dict[str, ArrayRecord]:
        """Arrays as ``sessions/arrays/`` names them: the newest of each spec name by
        that name, older ones by their folder's name (``<name>-<stamp>``)."""
        out: dict[str, ArrayRecord] = {}
        newest: dict[str, ArrayRecord] = {}
        for record in self.records.values():
            newest[record.name] = record
        for folder, record in self.records.items():
            out[record.name if newest[record.name] is record else folder] = record
        return out

    async def inputs_of(self, record: ArrayRecord, replica: Replica) -> list[str]:
        if replica.inputs is None:
            rel = replica.manifest[len(ARC_PREFIX) :]
            replica.inputs = (await self.arc.read(rel)).decode().splitlines()
        return replica.inputs

    async def find(self) -> None:
        """Once per mount: the arrays earlier mounts launched, from their ``array.json``
        (unreadable ones are logged and skipped)."""
        async with self._finding:
            if self._found:
                return
            try:
                folders = [n for n, is_dir in await self.arc.entries(self.home) if is_dir]
            except (errors.NotFound, errors.NotADirectory):
                folders = []
            except errors.CanfarfsError as exc:
                log.info("job arrays of earlier mounts not found: %s", exc)
                return
            found: dict[str, ArrayRecord] = {}
            for folder in sorted(folders):
                if folder in self.records:
                    continue
                try:
                    raw = await self.arc.read(f"{self.home}/{folder}/{RECORD_NAME}")
                    found[folder] = _decode(raw, f"{self.home}/{folder}")
                except errors.NotFound:
                    continue
                except (errors.CanfarfsError, ValueError, KeyError, TypeError) as exc:
                    log.warning("array %s: its record is unreadable: %s", folder, exc)
            self.records = found | self.records
            self._found = True


def _encode(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def _decode(raw: bytes, folder: str) -> ArrayRecord:
    doc = json.loads(raw)
    try:
        spec = SessionSpec.model_validate(doc["spec"])
    except ValidationError as exc:
        raise ValueError(f"its spec: {exc.error_count()} problems") from None
    split = doc.get("split", "chunk")
    if split not in ("chunk", "stripe"):
        raise ValueError(f"unknown split {split!r}")
    return ArrayRecord(
        spec=spec,
        folder=folder,
        stamp=str(doc["stamp"]),
        split=split,
        inputs=int(doc["inputs"]),
        replicas=[
            Replica(int(r["replica"]), str(r["manifest"]), [str(i) for i in r["ids"]])
            for r in doc["replicas"]
        ],
    )
