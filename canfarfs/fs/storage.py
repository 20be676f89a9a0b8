"""The storage core: arc and vault as a file system, without FUSE.

Operations take keys ``(service, path)`` and raise :mod:`canfarfs.errors`; the FUSE
adapter reaches them by path through :mod:`canfarfs.fs.storage_tree`, and only decodes
names and maps errors. docs/semantics.md describes what each
operation does and which errno each refusal gives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

import trio

from canfarfs import errors
from canfarfs.fs.attrs import Attr, attr_of, mode_of, mtime_value
from canfarfs.fs.data import Data
from canfarfs.fs.keylocks import KeyLocks
from canfarfs.fs.later import DEFERRABLE, LaterProps, PendingDir
from canfarfs.fs.membudget import DEFAULT_BYTES as DEFAULT_MEMORY
from canfarfs.fs.meta import Key, MetaCache, child_key, move_keys, parent_key
from canfarfs.fs.offline import (
    RECHECK_EVERY,
    RECHECK_TIMEOUT,
    load_metadata,
    probe,
    save_metadata,
)
from canfarfs.fs.openfile import OpenFile, StorageHandle
from canfarfs.fs.pins import version_of
from canfarfs.fs.readcache import ReadCache
from canfarfs.fs.remote_file import RemoteFile
from canfarfs.fs.staging import Stage, pending_entries
from canfarfs.fs.storage_status import StorageStatus, storage_status
from canfarfs.fs.uploads import Uploads
from canfarfs.fs.warmup import WarmUps
from canfarfs.fs.writeback import DELAY as WRITEBACK_DELAY
from canfarfs.fs.writeback import PARALLEL as UPLOADS_AT_ONCE
from canfarfs.fs.writeback import Queued, WriteBack
from canfarfs.vospace import props
from canfarfs.vospace.client import VOSpaceClient
from canfarfs.vospace.model import Node, NodeType

log = logging.getLogger(__name__)

NAME_MAX = 255
DOWN_HOLD = 10.0
MiB = 1024 * 1024
_XML_BAD = {chr(c) for c in range(32) if chr(c) not in "\t\n\r"} | {"\ufffe", "\uffff"}

#: xattr name (after ``user.``) → property URI, for the properties people know by name.
XATTR_NAMES: dict[str, str] = {
    "length": props.LENGTH,
    "date": props.DATE,
    "content-date": props.CONTENT_DATE,
    "MD5": props.MD5,
    "creator": props.CREATOR,
    "ispublic": props.ISPUBLIC,
    "groupread": props.GROUPREAD,
    "groupwrite": props.GROUPWRITE,
    "quota": props.QUOTA,
    "type": props.TYPE,
    "encoding": props.ENCODING,
    "islocked": props.ISLOCKED,
    "inheritPermissions": props.INHERIT,
    "mtime": props.MTIME,
}
_URI_TO_XATTR = {v: k for k, v in XATTR_NAMES.items()}


@dataclass
class StorageConfig:
    cache_dir: Path
    mountpoint: Path | None = None
    meta_ttl: float = 5.0
    negative_ttl: float = 5.0
    read_timeout: float = 30.0
    read_only: bool = False
    strict_modes: bool = False
    cache_size: int = 10 * 1024**3
    #: File bytes held in memory at once (read-ahead not yet read or cached).
    memory: int = DEFAULT_MEMORY
    user: str = ""
    #: close() returns once the bytes are staged; uploads go on in the background.
    writeback: bool = False
    #: Seconds a file is left alone before its write-back upload starts.
    writeback_delay: float = WRITEBACK_DELAY


#: Largest expired listing (in pages) refreshed whole instead of asking per name: a
#: ``cp -r`` out of a 1,000-entry directory cost a node request per file once the
#: listing had expired (1.9 requests per file at 20 ms), one page more than the limit.
RELIST_PAGES = 4
#: At most this many unread bytes of a file open elsewhere are fetched before it is
#: removed (rm of a big file held open by a forgotten reader must not download it).
KEEP_FOR_READERS_MAX = 64 * MiB
#: How long a directory this mount made takes mode changes as a copy's (cp -a, rsync -a
#: and tar -x set it once everything in it is copied).
COPY_WINDOW = 600.0


def check_name(name: str) -> None:
    """Refuse names VOSpace cannot hold (EINVAL) or that are too long (ENAMETOOLONG)."""
    if name in ("", ".", "..") or "/" in name:
        raise errors.InvalidArgument(f"invalid name {name!r}")
    if any(c in _XML_BAD for c in name):
        raise errors.InvalidArgument(f"name {name!r} holds a control character")
    if any("\udc80" <= c <= "\udcff" for c in name):
        raise errors.InvalidArgument(f"name {name!r} is not valid UTF-8")
    if len(name.encode()) > NAME_MAX:
        raise errors.NameTooLong(f"name of {len(name.encode())} bytes (at most {NAME_MAX})")


class Storage:
    """arc and vault through one cache, one set of staged writes."""

    def __init__(
        self, clients: dict[str, VOSpaceClient], config: StorageConfig, nursery: trio.Nursery
    ) -> None:
        self.clients = clients
        self.config = config
        self.nursery = nursery
        self.meta = MetaCache(ttl=config.meta_ttl, negative_ttl=config.negative_ttl)
        #: Staged copies by name: open for writing, or not yet on the server.
        self.stages: dict[Key, Stage] = {}
        #: With write-back, dates and copies' modes still to send, by name (later.py).
        self.later: dict[Key, LaterProps] = {}
        #: With write-back, directories made here and not yet on the server (later.py).
        self.pending_dirs: dict[Key, PendingDir] = {}
        #: Open files by name, one state each, shared by all their handles.
        self.files: dict[Key, OpenFile] = {}
        #: Handles open, also on files whose name is gone (no longer in ``files``).
        self._open_handles = 0
        #: When the mount last added or removed an entry of a directory (ns); vault
        #: does not date containers by their entries, so listings would not show it.
        self._dir_dates: dict[Key, int] = {}
        self._locks = KeyLocks()
        #: Nodes this mount made, and when; which of them are directories (_copying).
        self._made: dict[Key, float] = {}
        self._made_dirs: set[Key] = set()
        self._warned_modes = False
        self.staging_dir = config.cache_dir / "staging"
        self.data_dir = config.cache_dir / "data"
        for d in (config.cache_dir, self.staging_dir, self.data_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(d, 0o700)
        #: Cached copies of what was read (readcache.py), and the one memory budget.
        self.reads = ReadCache(
            self.data_dir,
            cache_size=config.cache_size,
            memory=config.memory,
            read_timeout=config.read_timeout,
            nursery=nursery,
        )
        # Pinned trees' last known metadata, served only while a service is down.
        self.reads.pins.seed(self.meta)
        #: Warm-up, pinning and eviction jobs (warmup.py).
        self.warmups = WarmUps(self)
        #: Uploads of staged bytes (uploads.py).
        self.uploads = Uploads(
            clients,
            nursery,
            read_timeout=config.read_timeout,
            after_upload=self._after_upload,
            memory=self.reads.memory,
        )
        #: Write-back (``--writeback``): the background upload queue, or None.
        self.writeback = (
            WriteBack(self._send_queued, nursery, delay=config.writeback_delay)
            if config.writeback
            else None
        )
        #: Files whose server copy changed under a queued upload: set aside, newest last.
        self.conflicts: list[Conflict] = []
        self._quota: dict[str, tuple[int, int]] = {}
        self._listing_in_flight: dict[Key, trio.Event] = {}
        self.down_until: dict[str, float] = {}
        self.last_error: dict[str, str] = {}
        #: Services that do not answer, and since when (wall time): offline.py.
        self.offline_since: dict[str, float] = {}
        self._rechecked_at: dict[str, float] = {}
        known = load_metadata(self.meta, config.cache_dir)
        if known:
            log.info("%d entries the last mount listed are known (served while offline)", known)

    # -- reachability ------------------------------------------------------------------
    # After a time-out or an unreachable server, cached views are served at once (for
    # DOWN_HOLD seconds) instead of waiting for the network again on every lookup.

    def is_down(self, service: str) -> bool:
        return trio.current_time() < self.down_until.get(service, 0.0)

    def mark_down(self, service: str, exc: BaseException) -> None:
        if not self.is_down(service):
            log.warning("%s unreachable (%s): answering from cache where possible", service, exc)
        self.down_until[service] = trio.current_time() + DOWN_HOLD
        self.last_error[service] = str(exc)
        self.offline_since.setdefault(service, time.time())

    async def _still_down(self, service: str) -> bool:
        """Before refusing for being offline: ask the service again (at most every
        RECHECK_EVERY seconds, for at most RECHECK_TIMEOUT), so an operation right after
        the link comes back is served rather than refused."""
        now = trio.current_time()
        if now - self._rechecked_at.get(service, -RECHECK_EVERY) >= RECHECK_EVERY:
            self._rechecked_at[service] = now
            await probe(self, service, RECHECK_TIMEOUT)
        # A TLS refusal (an untrusted certificate) is an answer, not a missing link: the
        # operation goes on to fail with its own error (EIO) and words, not ENETDOWN.
        return self.is_down(service) and "TLS: " not in self.last_error.get(service, "")

    def go_offline(self, why: str) -> None:
        """Every service counts as unreachable until a probe says otherwise."""
        for service in self.clients:
            self.mark_down(service, errors.Offline(why))

    def mark_up(self, service: str) -> None:
        self.offline_since.pop(service, None)
        if self.down_until.pop(service, None) is not None:
            log.warning("%s reachable again", service)
            if self.writeback is not None:
                self.writeback.kick()

    def client(self, key: Key) -> VOSpaceClient:
        return self.clients[key[0]]

    def status(self) -> StorageStatus:
        """What ``canfarfs status`` shows of arc and vault (storage_status.py)."""
        return storage_status(self, self._open_handles)

    def _writable(self) -> None:
        if self.config.read_only:
            raise errors.ReadOnly("mounted read-only")

    # -- metadata ----------------------------------------------------------------------

    async def node(self, key: Key) -> Node:
        """The node at ``key`` (staged files and changes still to send included);
        NotFound if it does not exist."""
        node = await self._node(key)
        later = self.later.get(key)
        return later.over(node) if later is not None else node

    async def _node(self, key: Key) -> Node:
        stage = self.stages.get(key)
        if stage is not None and not stage.discarded:
            return self._staged_node(key, stage)
        if self.pending_dirs:
            pending = self.pending_dirs.get(key)
            if pending is not None:
                return pending.node
            if key[1] and parent_key(key) in self.pending_dirs:  # holds only what is here
                raise errors.NotFound(f"{key[0]}:{key[1]}")
        known, node = self.meta.node(key)
        if known:
            if node is None:
                raise errors.NotFound(f"{key[0]}:{key[1]}")
            return node
        stale = self.meta.stale_node(key)
        if self.is_down(key[0]):
            if stale is not None:
                return stale
            if await self._still_down(key[0]):
                self._offline_unknown(key)
        if await self._relist_parent(key):
            known, node = self.meta.node(key)
            if known:
                if node is None:
                    raise errors.NotFound(f"{key[0]}:{key[1]}")
                return node
        started = trio.current_time()
        try:
            fetched: Node | None = await self.client(key).get_node(key[1])
        except errors.NotFound:
            fetched = None
        except errors.Transient as exc:
            self.mark_down(key[0], exc)
            if stale is None:
                raise
            return stale
        self.mark_up(key[0])
        if fetched is not None:
            fetched.children = None
        self.meta.put(key, fetched, started=started)  # unless changed meanwhile
        known, node = self.meta.node(key)
        if not known:
            node = fetched
        if node is None:
            raise errors.NotFound(f"{key[0]}:{key[1]}")
        return node

    def _offline_unknown(self, key: Key) -> None:
        """Offline, for a name not in the cache: ENOENT if the last listing of its
        directory does not hold it, else ENETDOWN at once (never a wait)."""
        parent = self.meta.stale_listing(parent_key(key)) if key[1] else None
        if parent is not None and key[1].rpartition("/")[2] not in parent.children:
            raise errors.NotFound(f"{key[0]}:{key[1]}")
        raise errors.Offline(f"{key[0]}:{key[1]} is not known here and {key[0]} cannot be reached")

    def _staged_node(self, key: Key, stage: Stage, last: Node | None = None) -> Node:
        known, remote = self.meta.node(key)
        if not known or remote is None:
            remote = last
        base = dict(remote.properties) if remote is not None else {}
        for uri, value in stage.pending_props.items():
            if value is None:
                base.pop(uri, None)
            else:
                base[uri] = value
        base[props.LENGTH] = str(stage.size)
        if stage.dirty or props.DATE not in base:
            base[props.DATE] = _now(stage.mtime)
        if stage.dirty:
            base.pop(props.MD5, None)  # the staged bytes are not the server's
        if stage.set_mtime_ns is not None:
            base[props.MTIME] = f"{stage.set_mtime_ns} {base.get(props.MD5) or ''}"
        if stage.copy_mode is not None:
            probe = Node(uri="vos://x/y", type=NodeType.DATA, properties=base)
            base[props.MODE] = f"{stat.S_IMODE(stage.copy_mode):o} {stat.S_IMODE(mode_of(probe)):o}"
        base.setdefault(props.CREATOR, self.config.user)
        return Node(uri=self.client(key).uri(key[1]), type=NodeType.DATA, properties=base)

    async def attr(self, key: Key) -> Attr:
        node = await self.node(key)
        a = attr_of(node)
        touched = self._dir_dates.get(key)
        if touched is not None and node.type is NodeType.CONTAINER and touched > a.mtime_ns:
            a = dataclasses.replace(a, mtime_ns=touched)
        if node.type is NodeType.LINK:
            a = Attr(mode=a.mode, size=len(self.link_text(key, node).encode()), mtime_ns=a.mtime_ns)
        return a

    async def listdir(self, key: Key) -> list[tuple[str, Node]]:
        """All children of a directory (snapshotted by the caller), staged files and
        directories not yet on the server included."""
        if key in self.pending_dirs:
            return self._local_entries(key, {})
        listing = self.meta.listing(key)
        if listing is None and self.is_down(key[0]):
            listing = self.meta.stale_listing(key)
            if listing is None and await self._still_down(key[0]):
                raise errors.Offline(
                    f"{key[0]}:{key[1]} was never listed here and {key[0]} cannot be reached"
                )
        if listing is None:
            started = trio.current_time()
            try:
                children = await self._fetch_listing(key)
            except errors.Transient as exc:
                self.mark_down(key[0], exc)
                listing = self.meta.stale_listing(key)
                if listing is None:
                    raise
            else:
                self.mark_up(key[0])
                self.meta.put_listing(key, children, started)
                listing = self.meta.stale_listing(key)  # fresh, unless it took a TTL
            assert listing is not None
        return self._local_entries(key, dict(listing.children))

    def _local_entries(self, key: Key, entries: dict[str, Node]) -> list[tuple[str, Node]]:
        """``entries`` (the server's) with what this mount holds that it has not sent."""
        for dkey, pending in self.pending_dirs.items():
            if parent_key(dkey) == key and dkey[1]:
                entries[dkey[1].rpartition("/")[2]] = pending.node
        for skey, stage in self.stages.items():
            if parent_key(skey) == key and skey[1] and not stage.discarded:
                entries[skey[1].rpartition("/")[2]] = self._staged_node(skey, stage)
        for lkey, later in self.later.items():
            name = lkey[1].rpartition("/")[2]
            if parent_key(lkey) == key and lkey[1] and name in entries:
                entries[name] = later.over(entries[name])
        return sorted(entries.items())

    async def _relist_parent(self, key: Key) -> bool:
        """Refresh the expired listing of ``key``'s parent when that is the cheaper way.

        A copy into or out of a directory asks about one name after another; once the
        listing's TTL has passed, each would cost a request of its own. When the parent
        was listed before and fits in :data:`RELIST_PAGES` pages, relisting answers all
        of them (concurrent askers share it) for at most that many requests per TTL.
        Returns whether a fresh listing is now known.
        """
        if not key[1]:
            return False
        parent = parent_key(key)
        old = self.meta.stale_listing(parent)
        if old is None or len(old.children) >= RELIST_PAGES * self.client(key).page_size:
            return False
        waiting = self._listing_in_flight.get(parent)
        if waiting is not None:
            await waiting.wait()
            return self.meta.listing(parent) is not None
        done = self._listing_in_flight[parent] = trio.Event()
        started = trio.current_time()
        try:
            children = await self._fetch_listing(parent)
        except errors.CanfarfsError as exc:
            log.debug("relisting %s:%s: %s", parent[0], parent[1], exc)
            return False
        finally:
            del self._listing_in_flight[parent]
            done.set()
        self.mark_up(key[0])
        self.meta.put_listing(parent, children, started)
        return True

    async def _fetch_listing(self, key: Key) -> dict[str, Node]:
        children: dict[str, Node] = {}
        try:
            async for parent, page in self.client(key).list_dir(key[1]):
                if parent.type is not NodeType.CONTAINER:
                    raise errors.NotADirectory(f"{key[0]}:{key[1]} is not a directory")
                for child in page:
                    child.children = None
                    children[child.name] = child
        except errors.NotFound:
            self.meta.put(key, None)
            raise
        return children

    async def lookup(self, parent: Key, name: str) -> Node:
        check_name(name)
        return await self.node(child_key(parent, name))

    # -- namespace ---------------------------------------------------------------------

    async def mkdir(self, key: Key) -> Node:
        self._writable()
        check_name(key[1].rpartition("/")[2])
        if self.writeback is not None:
            return await self._mkdir_later(key)
        node = await self.client(key).create_node(key[1], NodeType.CONTAINER)
        node.children = None
        self.meta.put(key, node)
        self.meta.put_listing(key, {})
        self._note_made(key, directory=True)
        self._touch_dir(parent_key(key))
        return node

    async def _mkdir_later(self, key: Key) -> Node:
        """mkdir with write-back: the directory is this mount's until the queue (or
        anything sent inside it) creates it on the server."""
        async with self._locks.hold(key):
            try:
                await self.node(key)
            except errors.NotFound:
                pass
            else:
                raise errors.AlreadyExists(f"{key[0]}:{key[1]}")
            parent = await self.node(parent_key(key))
            if parent.type is not NodeType.CONTAINER:
                raise errors.NotADirectory(f"{key[0]}:{parent_key(key)[1]} is not a directory")
            node = Node(
                uri=self.client(key).uri(key[1]),
                type=NodeType.CONTAINER,
                properties={props.DATE: _now(), props.CREATOR: self.config.user},
            )
            pending = self.pending_dirs[key] = PendingDir(key[0], key[1], node)
            self._note_made(key, directory=True)
            self._touch_dir(parent_key(key))
            assert self.writeback is not None
            self.writeback.queue(pending)
            return node

    async def _create_dir(self, pending: PendingDir) -> None:
        """Create a directory this mount made (its own pending parents first)."""
        await self._ensure_parents((pending.service, pending.path))
        async with pending.lock:
            if not pending.dirty:
                return
            key = (pending.service, pending.path)
            try:
                node = await self.client(key).create_node(key[1], NodeType.CONTAINER)
            except errors.AlreadyExists:
                node = await self.client(key).get_node(key[1])
                if node.type is not NodeType.CONTAINER:
                    raise errors.AlreadyExists(
                        f"{key[0]}:{key[1]}: something else holds the name on the server"
                    ) from None
            node.children = None
            pending.created = True
            if self.pending_dirs.get(key) is pending:
                del self.pending_dirs[key]
            self.meta.put(key, node)
            self.meta.put_listing(key, {})
            self.mark_up(key[0])

    async def _ensure_parents(self, key: Key) -> None:
        """Create, top down, the directories above ``key`` this mount made and has not
        created on the server yet: before anything is sent inside them."""
        if not self.pending_dirs or not key[1]:
            return
        parts = key[1].split("/")
        for i in range(1, len(parts)):
            pending = self.pending_dirs.get((key[0], "/".join(parts[:i])))
            if pending is not None:
                await self._create_dir(pending)

    async def _ensure_created(self, key: Key) -> None:
        """``key`` and the directories above it exist on the server."""
        await self._ensure_parents(key)
        pending = self.pending_dirs.get(key)
        if pending is not None:
            await self._create_dir(pending)

    async def _make_parents(self, key: Key) -> None:
        """``mkdir -p`` of ``key``'s parent on the server: for bytes staged under a
        directory that is not there (made by a mount that died before creating it, or
        removed by another client meanwhile)."""
        parts = key[1].split("/")
        for i in range(1, len(parts)):
            path = "/".join(parts[:i])
            try:
                await self.client(key).create_node(path, NodeType.CONTAINER)
            except errors.AlreadyExists:
                continue
            log.warning("%s:%s made again on the server, for %s", key[0], path, key[1])

    async def rmdir(self, key: Key) -> None:
        self._writable()
        node = await self.node(key)
        if node.type is not NodeType.CONTAINER:
            raise errors.NotADirectory(f"{key[0]}:{key[1]} is not a directory")
        if any(parent_key(k) == key for k in self.stages):
            raise errors.NotEmpty(f"{key[0]}:{key[1]} holds files being written")
        if any(parent_key(k) == key for k in self.pending_dirs):
            raise errors.NotEmpty(f"{key[0]}:{key[1]} holds directories made here")
        pending = self.pending_dirs.get(key)
        if pending is not None:
            async with pending.lock:
                if not pending.created:  # never on the server: nothing to remove there
                    pending.discarded = True
                    del self.pending_dirs[key]
                    self._drop_later(key)
                    self.meta.put(key, None)
                    self._touch_dir(parent_key(key))
                    return
        await self.client(key).delete_node(key[1])
        self._drop_later(key)
        self.meta.forget(key)
        self.meta.put(key, None)

    async def unlink(self, key: Key) -> None:
        """Remove a file. Open handles keep their bytes (the open state is detached from
        the name); staged bytes are discarded only once the server has removed the
        node, so a refused unlink (locked, permission) loses nothing."""
        self._writable()
        async with self._locks.hold(key):
            await self._unlink(key)

    async def _unlink(self, key: Key) -> None:
        """unlink with ``key``'s lock held; waits for an upload of it under way."""
        node = await self.node(key)
        if node.type is NodeType.CONTAINER:
            raise errors.IsADirectory(f"{key[0]}:{key[1]} is a directory")
        stage = self.stages.get(key)
        async with stage.lock if stage is not None else contextlib.nullcontext():
            f = self.files.get(key)
            if stage is None or not stage.new:
                if f is not None and f.stage is None and f.remote is not None:
                    await self._keep_for_readers(f)
                await self.client(key).delete_node(key[1])
            self._forget_file(key)
        self.meta.put(key, None)
        self._touch_dir(parent_key(key))

    async def _keep_for_readers(self, f: OpenFile) -> None:
        """Fetch the rest of a file its open readers may still read, before its name
        goes (bounded; what could not be fetched reads as ESTALE afterwards)."""
        remote = f.remote
        if remote is None or remote.cache.complete:
            return
        if remote.size - remote.cache.filled.total > KEEP_FOR_READERS_MAX:
            log.warning(
                "%s:%s removed while open: %d bytes its open handles never read "
                "are not fetched first (over %d); they read as ESTALE",
                f.key[0],
                f.key[1],
                remote.size - remote.cache.filled.total,
                KEEP_FOR_READERS_MAX,
            )
            return
        remote.use()
        try:
            kept = await remote.fill_all()
        finally:
            remote.release()
        if not kept:
            log.warning(
                "%s:%s removed while open: the bytes not yet read are lost to its "
                "open handles (ESTALE)",
                f.key[0],
                f.key[1],
            )

    def _drop_later(self, key: Key) -> None:
        """``key`` is gone: its dates and modes still to send are not sent."""
        later = self.later.pop(key, None)
        if later is not None:
            later.discarded = True

    def _forget_file(self, key: Key) -> None:
        """``key``'s name is gone: discard its staged bytes, detach its open state."""
        self._drop_later(key)
        stage = self.stages.pop(key, None)
        f = self.files.pop(key, None)
        if stage is not None:
            stage.discarded = True
            stage.end_stream("unlinked")
            if f is None or f.stage is not stage:
                stage.dispose()
        if f is not None:
            f.unlinked = True
            if f.remote is not None:
                f.remote.orphan()
        self.reads.drop(key)

    async def rename(self, src: Key, dst: Key) -> None:
        """POSIX rename on a VOSpace move job; replacing a target is delete-then-move.

        Open handles follow the file to its new name; the handles of a replaced target
        keep its old bytes (as after an unlink)."""
        self._writable()
        if src[0] != dst[0]:
            raise errors.CrossDevice("cannot move between arc and vault")
        check_name(dst[1].rpartition("/")[2])
        if src == dst:
            return
        if dst[1].startswith(src[1] + "/"):
            raise errors.InvalidArgument("cannot move a directory into itself")
        async with self._locks.hold(src, dst):
            await self._rename(src, dst)

    async def _rename(self, src: Key, dst: Key) -> None:
        """rename with both names' locks held; waits for an upload of ``src``."""
        node = await self.node(src)
        try:
            target = await self.node(dst)
        except errors.NotFound:
            target = None
        if target is not None:
            await self._clear_target(node, target, dst)
        stage = self.stages.get(src)
        later = self.later.get(src)
        pending = self.pending_dirs.get(src)
        async with (
            stage.lock if stage is not None else contextlib.nullcontext(),
            later.lock if later is not None else contextlib.nullcontext(),
            pending.lock if pending is not None else contextlib.nullcontext(),
        ):
            local = (stage is not None and stage.new) or (
                pending is not None and not pending.created
            )
            if not local:
                await self._ensure_parents(dst)
                await self.client(src).move(src[1], dst[1])
            self._rekey(src, dst)
        self.meta.forget(src)
        self.meta.put(src, None)
        self.meta.forget(dst)
        moved = node.model_copy(update={"uri": self.client(dst).uri(dst[1])})
        self.meta.put(dst, moved)
        self._touch_dir(parent_key(src))
        self._touch_dir(parent_key(dst))

    async def _clear_target(self, node: Node, target: Node, dst: Key) -> None:
        if target.type is NodeType.CONTAINER:
            if node.type is not NodeType.CONTAINER:
                raise errors.IsADirectory(f"{dst[0]}:{dst[1]} is a directory")
            await self.rmdir(dst)  # ENOTEMPTY if it holds anything
        else:
            if node.type is NodeType.CONTAINER:
                raise errors.NotADirectory(f"{dst[0]}:{dst[1]} is not a directory")
            await self._unlink(dst)

    def _rekey(self, src: Key, dst: Key) -> None:
        """Staged copies, open states and cached copies at or below ``src`` move to
        ``dst``; a streaming upload under the old name is given up."""

        def moved(k: Key) -> Key | None:
            if k[0] == src[0] and (k[1] == src[1] or k[1].startswith(src[1] + "/")):
                return (dst[0], dst[1] + k[1][len(src[1]) :])
            return None

        for new, stage in move_keys(self.stages, moved):
            stage.end_stream("renamed")
            stage.path = new[1]
            if stage.dirty:
                stage.journal()
        for new, f in move_keys(self.files, moved):
            f.key = new
            if f.remote is not None:
                f.remote.rename(new[1])
        for new, later in move_keys(self.later, moved):
            later.path = new[1]
        for new, pending in move_keys(self.pending_dirs, moved):
            pending.path = new[1]
            pending.node = pending.node.model_copy(update={"uri": self.client(new).uri(new[1])})
        self.reads.rekey(moved)
        move_keys(self._made, moved)
        move_keys(self._dir_dates, moved)
        self._made_dirs = {moved(k) or k for k in self._made_dirs}

    def _touch_dir(self, key: Key) -> None:
        """An entry came or went: the directory's date is now (as the server sets it)."""
        if len(self._dir_dates) > 10_000:
            self._dir_dates.clear()
        self._dir_dates[key] = time.time_ns()

    # -- links -------------------------------------------------------------------------

    def link_text(self, key: Key, node: Node) -> str:
        """A LinkNode's target as a symlink: relative inside the mount where possible."""
        target = node.target or ""
        for service, client in self.clients.items():
            bang = client.authority.replace("~", "!")
            for prefix in (f"vos://{client.authority}", f"vos://{bang}"):
                if target == prefix or target.startswith(prefix + "/"):
                    tpath = unquote(target[len(prefix) :].lstrip("/"))
                    here = PurePosixPath(key[0], key[1]).parent
                    return os.path.relpath(PurePosixPath(service, tpath), here)
        if target.startswith("file://"):
            return target[len("file://") :]
        return target

    def _link_uri(self, key: Key, text: str) -> str:
        mount = self.config.mountpoint
        if text.startswith("/"):
            if mount is not None and Path(text).is_relative_to(mount):
                rel = PurePosixPath(text).relative_to(mount)
            else:
                return "file://" + text
        else:
            rel = PurePosixPath(key[0], key[1]).parent / text
        parts: list[str] = []
        for part in rel.parts:
            if part == "..":
                if not parts:
                    raise errors.InvalidArgument(f"link target {text!r} leaves the mount")
                parts.pop()
            elif part not in ("", "."):
                parts.append(part)
        if not parts or parts[0] not in self.clients:
            raise errors.InvalidArgument(f"link target {text!r} is not under arc/ or vault/")
        return self.clients[parts[0]].uri("/".join(parts[1:]))

    async def symlink(self, key: Key, text: str) -> Node:
        self._writable()
        check_name(key[1].rpartition("/")[2])
        await self._ensure_parents(key)
        node = await self.client(key).create_node(
            key[1], NodeType.LINK, target=self._link_uri(key, text)
        )
        self.meta.put(key, node)
        return node

    async def readlink(self, key: Key) -> str:
        node = await self.node(key)
        if node.type is not NodeType.LINK:
            raise errors.InvalidArgument(f"{key[0]}:{key[1]} is not a symbolic link")
        return self.link_text(key, node)

    # -- permissions and properties ------------------------------------------------------

    async def chmod(self, key: Key, mode: int) -> Node:
        """A mode change (docs/semantics.md, *Permissions*): exactly, as ispublic,
        groupread and groupwrite (vospace-api.md §8); or, from a copy (cp -a, rsync -a,
        tar -x), recorded only, with no change of access."""
        self._writable()
        node = await self.node(key)
        if not self.config.strict_modes and (
            self._copying(key) or self._widens_beyond_one_class(node, mode)
        ):
            stage = self.stages.get(key)
            if stage is not None and stage.new and not stage.discarded:
                stage.copy_mode = mode  # judged once the server says what it inherits
                return self._staged_node(key, stage)
            return await self._copy_mode(key, node, mode)
        node = await self._chmod_exactly(key, node, mode)
        if node.prop(props.MODE):  # an explicit mode replaces a copy's recorded one
            node = await self._update(key, node, {props.MODE: None})
        return node

    def _copying(self, key: Key) -> bool:
        """Whether a mode change comes from a copy: the file is open for writing (cp,
        rsync and tar set modes with fchmod on the file they write); it is a directory
        this mount made lately (they set a directory's mode once its contents are in);
        or it is a file this mount made lately in a directory that passes permissions
        on (rsync sets the mode again by name there, where 0644 asks only for public
        read on top of the group's: a copy must not publish it)."""
        f = self.files.get(key)
        if f is not None and f.writers > 0:
            return True
        made = self._made.get(key)
        if made is None or trio.current_time() - made >= COPY_WINDOW:
            return False
        if key in self._made_dirs:
            return True
        known, parent = self.meta.node(parent_key(key))
        parent = parent if known else self.meta.stale_node(parent_key(key))
        return parent is not None and (parent.prop(props.INHERIT) or "").lower() == "true"

    def _note_made(self, key: Key, *, directory: bool) -> None:
        now = trio.current_time()
        if len(self._made) > 10_000:
            self._made = {k: t for k, t in self._made.items() if now - t < COPY_WINDOW}
            self._made_dirs &= set(self._made)
        self._made[key] = now
        if directory:
            self._made_dirs.add(key)

    @staticmethod
    def _widens_beyond_one_class(node: Node, mode: int) -> bool:
        """Whether ``mode`` asks for more than the node grants to both group and others
        (``chmod 644`` of a private file): as a copy does, never as ``chmod o+r``."""
        wider = stat.S_IMODE(mode) & ~stat.S_IMODE(mode_of(node))
        return bool(wider & 0o070) and bool(wider & 0o007)

    async def _copy_mode(self, key: Key, node: Node, mode: int) -> Node:
        """Record the mode; change no access. Copies set passing modes (rsync makes a
        directory 0700 while it fills it), so a copy neither grants nor takes away."""
        changes = self._copy_mode_changes(key, node, mode)
        if not changes:
            return node
        return await self._update(key, node, changes)

    def _copy_mode_changes(self, key: Key, node: Node, mode: int) -> dict[str, str | None]:
        changes: dict[str, str | None] = {}
        access = stat.S_IMODE(mode_of(node))
        requested = stat.S_IMODE(mode)
        if requested != access:
            changes[props.MODE] = f"{requested:o} {access:o}"
            if not self._warned_modes:
                self._warned_modes = True
                log.warning(
                    "%s:%s: a copy asked for mode %o; VOSpace grants %o. A copy's "
                    "mode is recorded and shown, never applied (nothing is "
                    "published by a copy; chmod o+r publishes). Said once.",
                    key[0],
                    key[1],
                    requested,
                    access,
                )
        elif node.prop(props.MODE):
            changes[props.MODE] = None
        return changes

    async def _chmod_exactly(self, key: Key, node: Node, mode: int) -> Node:
        """An explicit chmod: all of it, or EPERM."""
        if mode & (stat.S_IWOTH | stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX):
            raise errors.NotPermitted(
                "VOSpace cannot make a node world-writable or set setuid/setgid/sticky bits"
            )
        if node.type is not NodeType.LINK and not mode & stat.S_IRUSR:
            raise errors.NotPermitted("the owner always has read access on VOSpace")
        changes: dict[str, str | None] = {}
        public = bool(mode & stat.S_IROTH)
        if public != node.is_public:
            changes[props.ISPUBLIC] = "true" if public else "false"
        for bit, key_uri in ((stat.S_IRGRP, props.GROUPREAD), (stat.S_IWGRP, props.GROUPWRITE)):
            has = bool(node.prop(key_uri))
            want = bool(mode & bit)
            if want and not has:
                inherited = node.prop(props.GROUPREAD) or node.prop(props.GROUPWRITE)
                if not inherited:
                    raise errors.NotPermitted(
                        "no group to grant: set one first with "
                        f"setfattr -n user.{_URI_TO_XATTR[key_uri]} -v GROUP"
                    )
                changes[key_uri] = inherited
            elif has and not want:
                changes[key_uri] = None
        if not changes:
            return node
        return await self._update(key, node, changes)

    async def _update(self, key: Key, node: Node, changes: dict[str, str | None]) -> Node:
        stage = self.stages.get(key)
        if stage is not None and stage.new and not stage.discarded:
            # Not on the server yet (cp -p sets the mode before close): kept with the
            # staged file and applied right after its upload.
            stage.pending_props.update(changes)
            return self._staged_node(key, stage)
        if self.writeback is not None and changes.keys() <= DEFERRABLE:
            later = self.later.get(key)
            if later is None:
                later = self.later[key] = LaterProps(key[0], key[1], node.type)
            later.add(changes)
            self.writeback.queue(later)
            return later.over(node)
        await self._ensure_created(key)
        new = await self.client(key).update_node(key[1], node.type, changes)
        new.children = None
        if new.type is NodeType.LINK and new.target is None:
            new.target = node.target
        self.meta.put(key, new)
        return new

    async def set_mtime(self, key: Key, ns: int) -> None:
        """utimensat: date the node's current bytes (a node property, see attrs.mtime_of).
        Bytes still staged are dated once uploaded, with their MD5."""
        self._writable()
        stage = self.stages.get(key)
        if stage is not None and not stage.discarded and (stage.dirty or stage.new):
            stage.set_mtime_ns = ns
            return
        node = await self.node(key)
        await self._update(key, node, {props.MTIME: mtime_value(node, ns)})
        self._dir_dates.pop(key, None)  # the date set wins until an entry comes or goes

    async def getxattr(self, key: Key, name: str) -> bytes:
        node = await self.node(key)
        uri = XATTR_NAMES.get(name, name)
        value = node.prop(uri)
        if value is None:
            raise errors.NoAttribute(f"no attribute {name}")
        if uri in (props.GROUPREAD, props.GROUPWRITE):
            value = " ".join(props.value_to_groups(value))
        return value.encode()

    async def listxattr(self, key: Key) -> list[str]:
        node = await self.node(key)
        return sorted(_URI_TO_XATTR.get(k, k) for k, v in node.properties.items() if v is not None)

    async def setxattr(self, key: Key, name: str, value: bytes) -> None:
        self._writable()
        node = await self.node(key)
        uri = XATTR_NAMES.get(name, name)
        if uri in props.IMMUTABLE:
            raise errors.NotPermitted(f"{name} is maintained by the server (read-only)")
        if props.is_unrecognised_core(uri):
            raise errors.NotPermitted(f"{name} is not a VOSpace property")
        try:
            text = value.decode()
        except UnicodeDecodeError:
            raise errors.InvalidArgument("property values must be UTF-8 text") from None
        if uri in (props.GROUPREAD, props.GROUPWRITE):
            text = props.groups_to_value(text.replace(",", " ").split())
        elif uri in (props.ISPUBLIC, props.ISLOCKED, props.INHERIT):
            if text.strip().lower() not in ("true", "false"):
                raise errors.InvalidArgument(f"{name} takes true or false")
            text = text.strip().lower()
        await self._update(key, node, {uri: text or None})

    async def removexattr(self, key: Key, name: str) -> None:
        self._writable()
        node = await self.node(key)
        uri = XATTR_NAMES.get(name, name)
        if uri in props.IMMUTABLE:
            raise errors.NotPermitted(f"{name} is maintained by the server (read-only)")
        if node.prop(uri) is None:
            raise errors.NoAttribute(f"no attribute {name}")
        await self._update(key, node, {uri: None})

    async def statfs(self, service: str) -> tuple[int, int]:
        """(quota, used) of the user's allocation, from cache when the server is slow."""
        path = f"home/{self.config.user}" if service == "arc" else self.config.user
        try:
            with trio.fail_after(2.0):
                node = await self.clients[service].get_node(path)
            quota = int(node.prop(props.QUOTA) or 0)
            self._quota[service] = (quota, node.length)
        except (errors.CanfarfsError, trio.TooSlowError, ValueError) as exc:
            log.info("statfs %s: answering from cache (%s)", service, exc)
        return self._quota.get(service, (0, 0))

    # -- open files ------------------------------------------------------------------
    # One OpenFile per file, shared by every handle (openfile.py, semantics.md).

    def _file(self, key: Key) -> OpenFile:
        """The open state of ``key``, made (with any pending staged copy) if it has none."""
        f = self.files.get(key)
        if f is None:
            f = self.files[key] = OpenFile(key, stage=self.stages.get(key))
        f.handles += 1
        self._open_handles += 1
        return f

    async def open_read(self, key: Key) -> StorageHandle:
        """Open for reading: the staged copy if the file has one, else the server's
        current version (a new open always sees it: close-to-open)."""
        async with self._locks.hold(key):  # no rename or unlink of key meanwhile
            f = self._file(key)
            try:
                if f.stage is None or f.stage.discarded:
                    node = await self.node(key)
                    if node.type is not NodeType.DATA:
                        raise errors.IsADirectory(f"{key[0]}:{key[1]} is not a file")
                    remote = self._use_version(f, node)
                    if (
                        self.is_down(key[0])
                        and node.length
                        and not remote.cache.complete
                        and await self._still_down(key[0])
                    ):
                        raise errors.Offline(
                            f"{key[0]}:{key[1]} is not in the cache and {key[0]} cannot "
                            "be reached (warm it up, or pin it, before going offline)"
                        )
            except BaseException:
                await self.release_file(f)
                raise
        return StorageHandle(self, f, writable=False)

    def _use_version(self, f: OpenFile, node: Node) -> RemoteFile:
        """Point ``f`` at the cached copy of ``node``'s version (made if needed)."""
        f.node = node
        version = version_of(node)
        if f.remote is not None and f.remote.version == version and not f.remote.orphaned:
            return f.remote
        remote = self.reads.copy_of(f.key, version, node.length, self.client(f.key))
        old, f.remote = f.remote, remote.use()
        if old is not None:
            old.release()
        return f.remote

    async def read_file(self, f: OpenFile, offset: int, size: int) -> Data:
        """Read through ``f``: its staged copy if it has one, else the server's bytes.

        A read reaching the end of the server's copy first asks (within the metadata
        TTL) whether the file changed elsewhere, so ``tail -f`` follows a growing file
        (the kernel reads a grown file's last page again from its start)."""
        stage = f.stage
        if stage is not None:
            return await stage.read(offset, size)
        remote = f.remote
        if remote is None or (offset + size > remote.size and not f.unlinked):
            remote = await self._refreshed(f)
            if f.stage is not None:
                return await f.stage.read(offset, size)
            if remote is None:
                return b""
        return await self._read_remote(f, remote, offset, size)

    async def _read_remote(self, f: OpenFile, remote: RemoteFile, offset: int, size: int) -> Data:
        """Read the server's bytes; if they turn out to have changed under the copy
        (a body shorter than the node said, a range past its end, the path gone: the
        file was replaced, or renamed while the request was under way), ask the server
        what the file is now and read that, once."""
        remote.use()  # another reader may move f to a newer version meanwhile
        try:
            return await remote.read(offset, size)
        except errors.CanfarfsError as exc:
            if f.stage is not None:  # a writer gave the file a staged copy meanwhile
                return await f.stage.read(offset, size)
            if not _changed_underneath(exc) or f.unlinked:
                raise
            current = (await self._current_version(f)).use()
            try:
                return await current.read(offset, size)
            finally:
                current.release()
        finally:
            remote.release()

    async def _current_version(self, f: OpenFile) -> RemoteFile:
        """``f`` moved to the version of the file the server holds now."""
        for _ in range(3):
            key = f.key
            started = trio.current_time()
            try:
                node = await self.client(key).get_node(key[1])
            except errors.NotFound:
                if f.key != key:
                    continue  # renamed while we asked: ask for the new name
                if f.unlinked:
                    break
                self.meta.put(key, None, started=started)
                raise errors.Stale(f"{key[0]}:{key[1]} was deleted elsewhere while open") from None
            if f.key != key:
                continue
            node.children = None
            self.meta.put(key, node, started=started)
            if node.type is not NodeType.DATA:
                raise errors.Stale(f"{key[0]}:{key[1]} was replaced by a directory")
            remote = f.remote
            newer = self._use_version(f, node)
            if newer is not remote:
                log.info(
                    "%s:%s changed on the server while open: reading the new version",
                    key[0],
                    key[1],
                )
            return newer
        raise errors.Stale(f"{f.key[0]}:{f.key[1]} was removed while open")

    async def _refreshed(self, f: OpenFile) -> RemoteFile | None:
        """``f``'s server copy, moved to the current version if the file changed."""
        try:
            node = await self.node(f.key)
        except errors.CanfarfsError as exc:
            log.debug("refreshing open %s:%s: %s", f.key[0], f.key[1], exc)
            return f.remote
        if node.type is not NodeType.DATA or f.stage is not None:
            return f.remote
        return self._use_version(f, node)

    async def release_file(self, f: OpenFile) -> None:
        """A handle closed; the last one lets go of the state (pending bytes stay
        staged, and listed, until they are uploaded)."""
        f.handles -= 1
        self._open_handles -= 1
        stage = f.stage
        if (
            self.writeback is not None
            and f.writers == 0
            and stage is not None
            and not stage.discarded
            and not f.unlinked
            and (stage.dirty or stage.pending_props)
        ):
            self.writeback.queue(stage)
        if f.handles > 0:
            return
        if self.files.get(f.key) is f:
            del self.files[f.key]
        stage, f.stage = f.stage, None
        if stage is not None and (stage.discarded or not stage.dirty):
            if self.stages.get((stage.service, stage.path)) is stage:
                del self.stages[(stage.service, stage.path)]
            stage.dispose()
        remote, f.remote = f.remote, None
        if remote is not None:
            remote.release()

    def file_attr(self, f: OpenFile) -> Attr:
        """Attributes of an open file, also once its name is gone."""
        if f.stage is not None:
            return attr_of(self._staged_node(f.key, f.stage, f.node))
        if f.node is not None:
            return attr_of(f.node)
        raise errors.NotFound(f"{f.key[0]}:{f.key[1]}")

    # -- writing -----------------------------------------------------------------------

    async def open_write(
        self, key: Key, *, truncate: bool, create: bool, exclusive: bool = False
    ) -> StorageHandle:
        """Open for writing: every writer of a file shares its one staged copy, made
        (from the server's bytes unless truncating) by the first."""
        self._writable()
        if self.writeback is not None:
            self.writeback.writing()
        elif self.is_down(key[0]) and await self._still_down(key[0]):
            raise errors.ReadOnly(
                f"{key[0]} cannot be reached: read-only until it answers (with --writeback "
                "writes are queued instead)"
            )
        async with self._locks.hold(key):  # no rename or unlink of key meanwhile
            f = self._file(key)
            try:
                stage = f.stage
                if stage is not None and not stage.discarded:
                    if exclusive:
                        raise errors.AlreadyExists(f"{key[0]}:{key[1]}")
                    if truncate:
                        await stage.truncate(0)
                else:
                    f.stage = await self._new_stage(
                        f, truncate=truncate, create=create, exclusive=exclusive
                    )
                    self.stages[key] = f.stage
            except BaseException:
                await self.release_file(f)
                raise
            f.writers += 1
        return StorageHandle(self, f, writable=True)

    async def _new_stage(
        self, f: OpenFile, *, truncate: bool, create: bool, exclusive: bool
    ) -> Stage:
        key = f.key
        try:
            node: Node | None = await self.node(key)
        except errors.NotFound:
            if not create:
                raise
            node = None
        if node is not None and exclusive:
            raise errors.AlreadyExists(f"{key[0]}:{key[1]}")
        if node is not None and node.type is not NodeType.DATA:
            raise errors.IsADirectory(f"{key[0]}:{key[1]} is not a file")
        if node is None:
            check_name(key[1].rpartition("/")[2])
            parent = await self.node(parent_key(key))
            if parent.type is not NodeType.CONTAINER:
                raise errors.NotADirectory(f"{key[0]}:{parent_key(key)[1]} is not a directory")
        f.node = node
        stage = Stage(self.staging_dir, key[0], key[1], new=node is None, nursery=self.nursery)
        stage.base_md5 = node.prop(props.MD5) if node is not None else None
        try:
            if node is not None and node.length and not truncate:
                await self._download_into(f, node, stage)
            if node is None or truncate:
                stage.dirty = True
                stage.generation += 1
                stage.journal()  # inline: a thread hop cost more than the few syscalls
        except BaseException:
            stage.discarded = True
            stage.dispose()
            raise
        if node is None:
            self._touch_dir(parent_key(key))
        return stage

    async def _download_into(self, f: OpenFile, node: Node, stage: Stage) -> None:
        """Start a staged copy from the server's bytes (read as any reader reads them;
        if the file changes meanwhile the copy starts again from the new version)."""
        for _ in range(3):
            remote = self._use_version(f, node).use()
            try:
                remote.prefetch_all()

                async def read(offset: int, size: int, remote: RemoteFile = remote) -> Data:
                    data = await self._read_remote(f, remote, offset, size)
                    if f.remote is not remote:
                        raise _VersionChanged
                    return data

                await stage.fill_from(read, remote.size)
                return
            except _VersionChanged:
                assert f.node is not None
                node = f.node
            finally:
                remote.release()
        raise errors.Stale(f"{f.key[0]}:{f.key[1]} kept changing while it was opened")

    async def write_file(self, f: OpenFile, offset: int, data: bytes) -> int:
        if f.stage is None:
            raise errors.CanfarfsError("file not open for writing")
        return await self.write(f.stage, offset, data)

    async def truncate_file(self, f: OpenFile, size: int) -> None:
        if f.stage is None:
            raise errors.InvalidArgument("file not open for writing")
        await f.stage.truncate(size)

    async def flush_file(self, f: OpenFile) -> None:
        """close(): upload now (durable close); with write-back the upload is queued
        when the last writer lets go (release_file)."""
        if f.stage is None or f.unlinked or self.writeback is not None:
            return
        await self.flush(f.stage)

    async def fsync_file(self, f: OpenFile) -> None:
        """fsync(): the server holds the bytes (MD5 checked) when this returns."""
        if f.stage is not None and not f.unlinked:
            await self.flush(f.stage)

    async def write(self, stage: Stage, offset: int, data: bytes) -> int:
        if self.writeback is None:
            return await self.uploads.write(stage, offset, data)
        self.writeback.writing()
        try:
            return await self.uploads.write(stage, offset, data)
        except errors.NoSpace:
            self.writeback.kick()  # the staging disk is full: upload now, to free it
            raise

    async def flush(self, stage: Stage) -> None:
        """Upload if dirty; return only once the server holds the bytes (MD5 checked).
        With write-back, a server copy that changed since ours was staged is not
        overwritten: ours goes up beside it (:meth:`_set_aside`)."""
        async with stage.lock:
            if stage.discarded:
                return
            if not stage.dirty:
                await self._apply_pending_props(stage)
                return
            key = (stage.service, stage.path)
            await self._ensure_parents(key)
            if self.writeback is None:
                await self.uploads.upload(stage)
            else:
                await self._check_conflict(stage)
                try:
                    await self.uploads.upload(stage)
                except errors.NotFound:  # its directory is not on the server: make it
                    await self._make_parents(key)
                    await self.uploads.upload(stage)
            await self._apply_pending_props(stage)

    async def _apply_pending_props(self, stage: Stage) -> None:
        """Property changes made before the file existed on the server, now it does; and
        a date set while the bytes were staged, now with the MD5 they have."""
        if stage.set_mtime_ns is not None and not stage.dirty and stage.uploaded_md5:
            stage.pending_props[props.MTIME] = f"{stage.set_mtime_ns} {stage.uploaded_md5}"
            stage.set_mtime_ns = None
        if stage.copy_mode is not None and not stage.new:
            mode, stage.copy_mode = stage.copy_mode, None
            key = (stage.service, stage.path)
            known, node = self.meta.node(key)  # as uploaded, with what it inherited
            if not known or node is None:
                node = await self.client(key).get_node(key[1])
            stage.pending_props.update(self._copy_mode_changes(key, node, mode))
        await self._apply_props_now(stage)

    async def _apply_props_now(self, stage: Stage) -> None:
        if not stage.pending_props or stage.new:
            return
        key = (stage.service, stage.path)
        changes = dict(stage.pending_props)
        new = await self.client(key).update_node(key[1], NodeType.DATA, changes)
        new.children = None
        self.meta.put(key, new)
        for uri, value in changes.items():
            if stage.pending_props.get(uri, value) == value:
                stage.pending_props.pop(uri, None)

    async def _after_upload(self, key: Key, stage: Stage, md5: str, was_new: bool) -> None:
        if was_new:
            self._note_made(key, directory=False)
        stage.new = False
        stage.uploaded_md5 = md5
        stage.base_md5 = md5  # the server's copy is now ours
        await self._cache_uploaded_node(key, stage, md5, was_new)

    async def _cache_uploaded_node(self, key: Key, stage: Stage, md5: str, was_new: bool) -> None:
        """Update the cached node without asking the server again.

        An overwrite keeps the node's properties with the new length, MD5 and date. A new
        file gets what the server gives one (the service's rules, vospace-api.md): the
        parent's permissions when it has ``inheritPermissions``, ``ispublic=false``
        otherwise, and on arc the content type it was sent with. Only when the parent is
        unknown is the new node fetched. The next listing replaces this node either way.
        """
        self.reads.drop(key)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000", time.gmtime())
        known, old = self.meta.node(key)
        if not was_new and known and old is not None:
            p = dict(old.properties)
            p.update({props.LENGTH: str(stage.size), props.MD5: md5, props.DATE: now})
            self.meta.put(key, old.model_copy(update={"properties": p}))
            return
        parent_known, parent = self.meta.node(parent_key(key))
        if not parent_known or parent is None:
            parent = self.meta.stale_node(parent_key(key))
        if parent is None:
            try:
                node = await self.client(key).get_node(key[1])
            except errors.CanfarfsError as exc:
                log.info("refreshing %s:%s after upload: %s", key[0], key[1], exc)
                self.meta.forget(key)
                return
            node.children = None
            self.meta.put(key, node)
            return
        # The creator is the caller's server identity, which the mount does not otherwise
        # learn; the parent's creator is that identity in one's own tree.
        p = {
            props.LENGTH: str(stage.size),
            props.MD5: md5,
            props.DATE: now,
            props.CREATOR: parent.prop(props.CREATOR) or self.config.user,
            props.ISPUBLIC: "false",
        }
        if (parent.prop(props.INHERIT) or "").lower() == "true":
            for name in (props.ISPUBLIC, props.GROUPREAD, props.GROUPWRITE):
                value = parent.prop(name)
                if value is not None:
                    p[name] = value
        if key[0] == "arc":
            p[props.TYPE] = "application/octet-stream"
        self.meta.put(key, Node(uri=self.client(key).uri(key[1]), type=NodeType.DATA, properties=p))

    async def truncate(self, key: Key, size: int) -> None:
        """truncate(2) without an open handle: stage, cut, upload at once."""
        handle = await self.open_write(key, truncate=size == 0, create=False)
        try:
            if size:
                await handle.truncate(size)
            await handle.flush()
        finally:
            await handle.release()

    # -- write-back --------------------------------------------------------------------

    async def _send_queued(self, item: Queued) -> bool:
        """The write-back queue's one call: upload a staged file, or send a node's dates
        and modes; False when the file is open for writing again."""
        if isinstance(item, LaterProps):
            await self._send_later(item)
            return True
        if isinstance(item, PendingDir):
            await self._create_dir(item)
            return True
        assert isinstance(item, Stage)
        return await self._upload_queued(item)

    async def _send_later(self, later: LaterProps) -> None:
        """Send the dates and modes kept for a node (later.py); a node removed on the
        server meanwhile has nothing left to date."""
        async with later.lock:
            if not later.dirty:
                return
            key = (later.service, later.path)
            changes = dict(later.changes)
            await self._ensure_created(key)
            try:
                new = await self.client(key).update_node(key[1], later.type, changes)
            except errors.NotFound:
                if (later.service, later.path) == key:  # else moved with its directory
                    later.discarded = True
            else:
                later.sent(changes)
                new.children = None
                self.meta.put(key, new)
                self.mark_up(key[0])
            if not later.dirty and self.later.get(key) is later:
                del self.later[key]

    async def _upload_queued(self, stage: Stage) -> bool:
        """One write-back upload; False when the file is open for writing again (its
        next close queues it). A server copy that changed since this one was staged is
        not overwritten: ours goes up beside it (:meth:`_set_aside`)."""
        key = (stage.service, stage.path)
        f = self.files.get(key)
        if f is not None and f.stage is stage and f.writers > 0:
            return False
        await self.flush(stage)
        self.mark_up(stage.service)
        key = (stage.service, stage.path)
        if key not in self.files and not stage.dirty and self.stages.get(key) is stage:
            del self.stages[key]
            stage.dispose()
        return True

    async def _check_conflict(self, stage: Stage) -> None:
        """With ``stage.lock`` held, before an upload over an existing file: set ours
        aside if the server's copy is no longer the one ours started from."""
        if stage.new or stage.base_md5 is None:
            return
        key = (stage.service, stage.path)
        try:
            server = await self.client(key).get_node(key[1])
        except errors.NotFound:
            return  # removed on the server meanwhile: ours puts it back
        if server.prop(props.MD5) != stage.base_md5 and (stage.service, stage.path) == key:
            await self._set_aside(stage, server)

    async def _set_aside(self, stage: Stage, server: Node) -> None:
        """A conflict: the server's copy changed after ours was staged. Ours moves to
        ``NAME.conflict-<host>-<UTC time>`` (uploaded as a new file there), and the name
        shows the server's copy again. Called with ``stage.lock`` held; the move is
        made without a checkpoint, so no rename of the name can come between."""
        key = (stage.service, stage.path)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = (key[0], f"{key[1]}.conflict-{socket.gethostname()}-{stamp}")
        self._rekey(key, aside)
        stage.new = True
        stage.base_md5 = None
        self.meta.forget(key)
        self._touch_dir(parent_key(key))
        await trio.to_thread.run_sync(stage.journal)
        conflict = Conflict(
            path=f"{key[0]}/{key[1]}",
            kept_as=f"{aside[0]}/{aside[1]}",
            server_md5=server.prop(props.MD5),
            at=time.time(),
        )
        self.conflicts.append(conflict)
        del self.conflicts[:-MAX_CONFLICTS]
        log.warning(
            "conflict: %s changed on the server after it was written here; the server's "
            "copy is kept, and the bytes written here go up as %s",
            conflict.path,
            conflict.kept_as,
        )

    # -- recovery ----------------------------------------------------------------------

    def pending(self) -> list[Stage]:
        """Staged files whose bytes are not (all) on the server yet."""
        return [s for s in self.stages.values() if s.dirty and not s.discarded]

    async def sync(self) -> list[str]:
        """Upload every pending file now, several at once; return the failures (one line
        each). The write-back queue's waits end too (its files are among these)."""
        if self.writeback is not None:
            self.writeback.kick()
        failures: list[str] = []
        limit = trio.CapacityLimiter(UPLOADS_AT_ONCE)

        async def one(stage: Stage) -> None:
            async with limit:
                try:
                    await self.flush(stage)
                except errors.CanfarfsError as exc:
                    failures.append(f"{stage.service}:{stage.path}: {exc}")
                    return
            key = (stage.service, stage.path)
            if key not in self.files and not stage.dirty and self.stages.get(key) is stage:
                del self.stages[key]
                stage.dispose()

        async def one_later(later: LaterProps) -> None:
            async with limit:
                try:
                    await self._send_later(later)
                except errors.CanfarfsError as exc:
                    failures.append(f"{later.service}:{later.path} (date or mode): {exc}")

        for pending in sorted(self.pending_dirs.values(), key=lambda d: d.path.count("/")):
            try:
                await self._create_dir(pending)
            except errors.CanfarfsError as exc:
                failures.append(f"{pending.service}:{pending.path} (directory): {exc}")
        async with trio.open_nursery() as nursery:
            for stage in self.pending():
                nursery.start_soon(one, stage)
        async with trio.open_nursery() as nursery:  # once the files they date are up
            for later in list(self.later.values()):
                nursery.start_soon(one_later, later)
        return sorted(failures)

    async def recover(self) -> list[str]:
        """Upload bytes an earlier run staged but never got onto the server.

        Returns a line per entry: uploaded, or still pending with its local path.
        """
        report = []
        for data, entry in pending_entries(self.staging_dir):
            service, path = entry.get("service"), entry.get("path")
            if service not in self.clients or not isinstance(path, str):
                continue
            size = data.stat().st_size
            if self.writeback is not None:
                stage = self._adopt(service, path, data, entry, size, None)
                if stage is not None:
                    self.writeback.queue(stage)
                    report.append(f"queued: {service}:{path} ({size} bytes), written before")
                continue
            try:
                md5 = await trio.to_thread.run_sync(_md5_file, data)
                await self.clients[service].upload(path, data, size, md5)
            except errors.CanfarfsError as exc:
                report.append(
                    f"still pending: {service}:{path} ({size} bytes) kept at {data}: {exc}"
                )
                self._adopt(service, path, data, entry, size, str(exc))
                continue
            data.unlink(missing_ok=True)
            data.with_suffix(".json").unlink(missing_ok=True)
            report.append(f"recovered: {service}:{path} ({size} bytes) uploaded")
        removed = self._collect_orphans()
        if removed:
            report.append(f"removed {removed} staged or cached files no upload needs")
        return report

    def _collect_orphans(self) -> int:
        """Remove what an earlier run left that holds nothing to upload: staged files
        without a dirty journal entry, and cached copies the index does not keep (only
        pinned files' copies are reused across runs)."""
        keep = {data.stem for data, _ in pending_entries(self.staging_dir)}
        removed = 0
        for d, wanted in ((self.staging_dir, keep), (self.data_dir, self.reads.kept_files())):
            for p in d.iterdir():
                if p.name.split(".", 1)[0] not in wanted and p.is_file():
                    p.unlink(missing_ok=True)
                    removed += 1
        return removed

    def close(self) -> None:
        """At unmount: drop clean staged copies and every cached copy but pinned files'
        (kept, with the index); bytes still to upload stay staged, with their journal,
        for the next mount."""
        for key, stage in list(self.stages.items()):
            if stage.discarded or not stage.dirty:
                del self.stages[key]
            stage.dispose()
        dirs = [f"{k[0]}/{k[1]}" for k, d in self.pending_dirs.items() if d.dirty]
        dates = [f"{k[0]}/{k[1]}" for k, later in self.later.items() if later.dirty]
        if dirs or dates:  # not journaled (docs/semantics.md, Write-back): say what goes
            log.warning(
                "unmounted before they were sent (canfarfs umount sends them first): "
                "%d new directory(ies) %s; the dates or modes of %d node(s) %s",
                len(dirs),
                dirs[:10],
                len(dates),
                dates[:10],
            )
        self.reads.close(self.meta)
        try:
            save_metadata(self.meta, self.config.cache_dir)  # for an offline start
        except OSError as exc:
            log.warning("the listings could not be saved for an offline start: %s", exc)

    def _adopt(
        self,
        service: str,
        path: str,
        data: Path,
        entry: dict[str, object],
        size: int,
        error: str | None,
    ) -> Stage | None:
        """Make a recovered file that could not be uploaded yet a pending upload of this
        mount: ``status`` lists it, ``sync`` and ``umount`` retry it, reads see it."""
        key = (service, path)
        if key in self.stages:
            return None
        base = entry.get("base_md5")
        stage = Stage(
            self.staging_dir,
            service,
            path,
            id=data.stem,
            size=size,
            dirty=True,
            new=bool(entry.get("new")),
            tries=1 if error else 0,
            last_error=error,
            nursery=self.nursery,
            mtime=data.stat().st_mtime,  # written before: no write-back delay
        )
        stage.base_md5 = base if isinstance(base, str) else None
        self.stages[key] = stage
        return stage


#: Conflicts remembered for ``status``.
MAX_CONFLICTS = 100


@dataclass(frozen=True)
class Conflict:
    """A queued upload whose server copy had changed: where each version is now."""

    path: str
    kept_as: str
    server_md5: str | None
    at: float


class _VersionChanged(Exception):
    """The server's copy changed while a staged copy was being started from it."""


def _changed_underneath(exc: errors.CanfarfsError) -> bool:
    """Whether a failed read suggests the server's file is no longer the cached version."""
    return isinstance(exc, errors.ProtocolError | errors.NotFound) or exc.status == 416


def _now(when: float | None = None) -> str:
    """A VOSpace date (UTC, milliseconds) for ``when`` (default: now)."""
    t = time.time() if when is None else when
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"


def _md5_file(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - protocol checksum
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()
