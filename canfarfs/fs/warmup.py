"""Warm-up, pinning and eviction: files and trees brought into the read cache ahead of
use (``canfarfs warmup``), kept there (``--pin``), or dropped (``--evict``).

The CLI asks through the control file (control.py); the work is done here, in the
storage core, through the read cache's copies (readcache.py): a file being warmed and a
reader of it share one download. A job lists its trees afresh (a cached copy whose
version differs from the listing's is fetched again), then fetches at most
:data:`PARALLEL` files at once, each wait bounded by the mount's ``--timeout``. Its
progress and outcome are in the status document (``warmups``), which the CLI follows.

Pinning more than ``--cache-size`` in all is refused (ENOSPC) before anything is
fetched; a file bigger than ``--cache-size`` cannot be cached (EFBIG).
"""

from __future__ import annotations

import errno
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from canfarfs import errors
from canfarfs.fs.cachefile import CacheFile
from canfarfs.fs.meta import Key, child_key, parent_key
from canfarfs.fs.pins import version_of
from canfarfs.tasks import spawn
from canfarfs.vospace.model import Node, NodeType

if TYPE_CHECKING:
    from canfarfs.fs.storage import Storage

log = logging.getLogger(__name__)

#: Files fetched (and directories listed) at once by one job.
PARALLEL = 32
#: Finished jobs kept in the status document.
MAX_JOBS = 16
#: Bytes asked for per read while fetching a file (a read-cache piece).
PART = 1024 * 1024
ACTIONS = ("warmup", "pin", "evict")
#: The control file's commands that :func:`control_command` runs.
COMMANDS = ("job", "cancel", *ACTIONS)


def errno_name(exc: BaseException) -> str:
    return errno.errorcode.get(errors.errno_for(exc), "EIO")


@dataclass
class Job:
    """One ``canfarfs warmup`` run, as the status document shows it."""

    id: str
    action: str
    paths: list[str]
    state: str = "listing"  # listing, fetching, done, failed, cancelled
    files: int = 0
    bytes: int = 0
    done_files: int = 0
    done_bytes: int = 0
    cached_files: int = 0
    cached_bytes: int = 0
    fetched_bytes: int = 0
    skipped: int = 0
    #: Files a warm-up bigger than the cache fetched but could not keep (unpinned).
    evicted_files: int = 0
    evicted_bytes: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: Set when the job has ended (done, failed or cancelled).
    ended: trio.Event = field(default_factory=trio.Event)
    #: What the job brought into the cache: (key, version, length).
    kept: list[tuple[Key, str, int]] = field(default_factory=list, repr=False)

    @property
    def running(self) -> bool:
        return self.finished is None

    def fail(self, key: Key, exc: BaseException) -> None:
        self.failed.append(
            {"path": f"{key[0]}/{key[1]}", "errno": errno_name(exc), "error": str(exc)}
        )

    def end(self, state: str) -> None:
        self.state = state
        self.finished = time.monotonic()
        self.ended.set()

    def status(self) -> dict[str, Any]:
        end = self.finished if self.finished is not None else time.monotonic()
        return {
            "id": self.id,
            "action": self.action,
            "paths": self.paths,
            "state": self.state,
            "files": self.files,
            "bytes": self.bytes,
            "done_files": self.done_files,
            "done_bytes": self.done_bytes,
            "cached_files": self.cached_files,
            "cached_bytes": self.cached_bytes,
            "fetched_bytes": self.fetched_bytes,
            "skipped": self.skipped,
            "evicted_files": self.evicted_files,
            "evicted_bytes": self.evicted_bytes,
            "failed": self.failed,
            "error": self.error,
            "seconds": round(end - self.started, 2),
        }


class WarmUps:
    """The warm-up jobs of one storage core."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.jobs: list[Job] = []

    def status(self) -> list[dict[str, Any]]:
        return [job.status() for job in self.jobs]

    def job(self, job_id: str) -> Job | None:
        return next((j for j in self.jobs if j.id == job_id), None)

    def _new(self, job_id: str, action: str, keys: list[Key]) -> Job:
        if action not in ACTIONS:
            raise errors.InvalidArgument(f"unknown action {action!r}")
        if self.job(job_id) is not None:
            raise errors.AlreadyExists(f"a warm-up job {job_id!r} exists already")
        if not keys:
            raise errors.InvalidArgument("no paths given")
        for key in keys:
            if key[0] not in self.storage.clients:
                raise errors.InvalidArgument(
                    f"{key[0]}/{key[1]}: only files under arc/ and vault/ are cached"
                )
        job = Job(job_id, action, [f"{k[0]}/{k[1]}".rstrip("/") for k in keys])
        finished = [j for j in self.jobs if not j.running]
        for old in finished[: max(0, len(finished) - MAX_JOBS + 1)]:
            self.jobs.remove(old)
        self.jobs.append(job)
        return job

    def start(self, job_id: str, action: str, keys: list[Key]) -> Job:
        """Start fetching ``keys`` (files or trees) in the background; ``action`` pin
        also pins them. Progress and outcome: :meth:`status`."""
        job = self._new(job_id, action, keys)
        spawn(
            self.storage.nursery,
            self._run,
            job,
            keys,
            what=f"warm-up {job.id}",
            on_error=lambda exc: self._crashed(job, exc),
        )
        return job

    def cancel(self, job_id: str) -> None:
        job = self.job(job_id)
        if job is None:
            raise errors.NotFound(f"no warm-up job {job_id!r}")
        job.scope.cancel()

    def _crashed(self, job: Job, exc: BaseException) -> None:
        job.error = f"EIO: {exc}"
        job.end("failed")

    async def evict(self, job_id: str, keys: list[Key]) -> Job:
        """Unpin ``keys`` and drop their cached copies (open files keep theirs until
        they close); the whole job at once (no network)."""
        job = self._new(job_id, "evict", keys)
        reads = self.storage.reads
        for key in keys:
            reads.pins.unpin(key)
            files, size = reads.evict(key)
            job.files += files
            job.bytes += size
            job.done_files += files
            job.done_bytes += size
        await reads.save_index(self.storage.meta)
        job.end("done")
        return job

    # -- the job ---------------------------------------------------------------------

    async def _run(self, job: Job, keys: list[Key]) -> None:
        pin = job.action == "pin"
        reads = self.storage.reads
        with job.scope:
            files: dict[Key, Node] = {}
            listings: dict[Key, dict[str, Node]] = {}
            nodes: dict[Key, Node] = {}
            limit = trio.CapacityLimiter(PARALLEL)
            async with trio.open_nursery() as nursery:
                for key in keys:
                    nursery.start_soon(self._walk_root, job, key, files, listings, nodes, limit)
            if pin:
                pinned = {k: n.length for k, n in reads.pins.files()}
                pinned.update((k, n.length) for k, n in files.items())
                total = sum(pinned.values())
                budget = self.storage.config.cache_size
                if total > budget:
                    job.error = (
                        f"ENOSPC: pinned files would take {total} bytes, more than the "
                        f"cache size ({budget} bytes, --cache-size); nothing was pinned"
                    )
                    job.end("failed")
                    return
                for key in keys:
                    if nodes.get(key) is not None:
                        reads.pins.pin(key)
                        self._record_above(key)
                for key, node in nodes.items():
                    reads.pins.record(key, node)
                for key, children in listings.items():
                    reads.pins.record_listing(key, children)
            job.state = "fetching"
            queue = sorted(files.items())
            async with trio.open_nursery() as nursery:
                for _ in range(min(PARALLEL, len(queue))):
                    nursery.start_soon(self._fetcher, job, queue)
            if pin or reads.pins.roots:
                await reads.save_index(self.storage.meta)
            for key, version, length in job.kept:  # a warm-up bigger than the cache
                if not reads.complete(key, version):
                    job.evicted_files += 1
                    job.evicted_bytes += length
            job.end("done")
            return
        job.end("cancelled")
        if reads.pins.roots:
            await reads.save_index(self.storage.meta)

    def _record_above(self, key: Key) -> None:
        """Record the nodes of the directories above a pinned key, as known (the path to
        it was looked up), so that they can be served while a service is down."""
        while key[1]:
            key = parent_key(key)
            node = self.storage.meta.stale_node(key)
            if node is not None:
                self.storage.reads.pins.record(key, node)

    async def _walk_root(
        self,
        job: Job,
        key: Key,
        files: dict[Key, Node],
        listings: dict[Key, dict[str, Node]],
        nodes: dict[Key, Node],
        limit: trio.CapacityLimiter,
    ) -> None:
        storage = self.storage
        # Asked afresh: the version to compare cached copies with is the server's now.
        storage.meta.nodes.pop(key, None)
        if key[1]:
            storage.meta.invalidate_listing(parent_key(key))
        try:
            async with limit:
                node = await storage.node(key) if key[1] else await self._root_node(key)
        except errors.CanfarfsError as exc:
            job.fail(key, exc)
            return
        nodes[key] = node
        if node.type is NodeType.CONTAINER:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._walk_dir, job, key, files, listings, nodes, limit, nursery)
        else:
            self._add(job, key, node, files)

    async def _root_node(self, key: Key) -> Node:
        """A service's root, as a directory to list."""
        return Node(uri=self.storage.client(key).uri(""), type=NodeType.CONTAINER)

    async def _walk_dir(
        self,
        job: Job,
        key: Key,
        files: dict[Key, Node],
        listings: dict[Key, dict[str, Node]],
        nodes: dict[Key, Node],
        limit: trio.CapacityLimiter,
        nursery: trio.Nursery,
    ) -> None:
        storage = self.storage
        storage.meta.invalidate_listing(key)
        try:
            async with limit:
                entries = await storage.listdir(key)
        except errors.CanfarfsError as exc:
            job.fail(key, exc)
            return
        children: dict[str, Node] = {}
        for name, node in entries:
            ckey = child_key(key, name)
            if ckey in storage.stages:
                job.skipped += 1  # written here: its bytes are local already
                continue
            children[name] = node
            if node.type is NodeType.CONTAINER:
                nursery.start_soon(
                    self._walk_dir, job, ckey, files, listings, nodes, limit, nursery
                )
            elif node.type is NodeType.DATA:
                self._add(job, ckey, node, files)
            else:
                job.skipped += 1  # links are not followed
        listings[key] = children

    def _add(self, job: Job, key: Key, node: Node, files: dict[Key, Node]) -> None:
        if key in self.storage.stages:
            job.skipped += 1
            return
        if node.type is not NodeType.DATA:
            job.skipped += 1
            return
        if key not in files:
            files[key] = node
            job.files += 1
            job.bytes += node.length

    async def _fetcher(self, job: Job, queue: list[tuple[Key, Node]]) -> None:
        while queue:
            key, node = queue.pop()
            try:
                await self._fetch(job, key, node)
            except errors.CanfarfsError as exc:
                job.fail(key, exc)
            job.done_files += 1

    async def _fetch(self, job: Job, key: Key, node: Node) -> None:
        """Bring all of ``key`` (at ``node``'s version) into the cache, on disk."""
        storage = self.storage
        reads = storage.reads
        if reads.complete(key, version_of(node)):
            job.cached_files += 1
            job.cached_bytes += node.length
            job.done_bytes += node.length
            job.kept.append((key, version_of(node), node.length))
            return
        if node.length > reads.cache_size:
            job.done_bytes += node.length
            raise errors.FileTooBig(
                f"{key[0]}/{key[1]}: {node.length} bytes, more than the cache size "
                f"({reads.cache_size} bytes, --cache-size)"
            )
        counted = 0
        for attempt in range(2):
            remote = reads.copy_of(key, version_of(node), node.length, storage.client(key)).use()
            cache = remote.cache
            keep, cache.keep = cache.keep, True  # nothing let go before it is on disk
            before = remote.fetched
            try:
                pos = 0
                while pos < node.length:
                    data = await remote.read(pos, min(PART, node.length - pos))
                    if not data:
                        raise errors.ProtocolError(f"no bytes at {pos} of {node.length}")
                    pos += len(data)
                    if pos > counted:
                        job.done_bytes += pos - counted
                        counted = pos
                await self._on_disk(remote.cache, key)
                job.kept.append((key, version_of(node), node.length))
                return
            except errors.CanfarfsError as exc:
                changed = isinstance(exc, errors.ProtocolError | errors.NotFound)
                if attempt or not (changed or exc.status == 416):
                    raise
                # Changed on the server while being fetched: fetch what it is now.
                fresh = await storage.client(key).get_node(key[1])
                fresh.children = None
                storage.meta.put(key, fresh)
                if fresh.type is not NodeType.DATA:
                    raise errors.Stale(f"{key[0]}/{key[1]} is no longer a file") from exc
                job.bytes += fresh.length - node.length
                node = fresh
            finally:
                job.fetched_bytes += remote.fetched - before
                cache.keep = keep
                remote.release()

    async def _on_disk(self, cache: CacheFile, key: Key) -> None:
        """Wait (bounded by ``--timeout``) for the write-behind to finish the copy."""
        with trio.move_on_after(self.storage.config.read_timeout):
            while cache.write_to_disk and not cache.on_disk.covers(0, cache.size):
                await cache.budget.changed()  # each piece written behind pokes it
        if not (cache.write_to_disk and cache.on_disk.covers(0, cache.size)):
            raise errors.NoSpace(
                f"{key[0]}/{key[1]}: fetched, but the cache disk did not keep it "
                "(full or failing; see the log)"
            )


def key_of(path: str) -> Key:
    """A path relative to the mount root (``arc/home/alice/raw``) as a key."""
    parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise errors.InvalidArgument(f"{path!r}: give a path inside the mount without '..'")
    if not parts:
        raise errors.InvalidArgument("give a path under arc/ or vault/, not the mount root")
    return parts[0], "/".join(parts[1:])


async def control_command(storage: Storage, lines: list[str]) -> None:
    """Run the warm-up commands written to the control file, one per line:

    * ``job ID`` (first, optional): the name the job has in ``status`` (``warmups``);
    * ``warmup PATH``, ``pin PATH`` or ``evict PATH`` (one verb per job, one line per
      path relative to the mount root): start fetching (pin: and pin) in the background,
      or unpin and drop at once;
    * ``cancel ID``: stop a running job.

    Bad input raises InvalidArgument (EINVAL); a path outside arc/ and vault/ too.
    """
    job_id = ""
    verbs: set[str] = set()
    keys: list[Key] = []
    for line in lines:
        verb, _, arg = line.partition(" ")
        arg = arg.strip()
        if not arg:
            raise errors.InvalidArgument(f"control command {verb!r} needs an argument")
        if verb == "cancel":
            storage.warmups.cancel(arg)
            continue
        if verb == "job":
            if keys or job_id:
                raise errors.InvalidArgument("'job ID' comes once, before the paths")
            job_id = arg
            continue
        if verb not in ACTIONS:
            raise errors.InvalidArgument(
                f"unknown control command {verb!r} (try: sync, warmup, pin, evict, cancel)"
            )
        verbs.add(verb)
        keys.append(key_of(arg))
    if not keys:
        return
    if len(verbs) > 1:
        raise errors.InvalidArgument("one job takes one of warmup, pin or evict")
    action = verbs.pop()
    job_id = job_id or f"{action}-{len(storage.warmups.jobs) + 1}-{time.monotonic_ns()}"
    if action == "evict":
        await storage.warmups.evict(job_id, keys)
    else:
        storage.warmups.start(job_id, action, keys)
