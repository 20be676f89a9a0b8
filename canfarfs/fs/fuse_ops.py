"""The thin pyfuse3 adapter: decode names, resolve an inode to its tree and path, call
the tree, turn errors into errnos. No file-system logic lives here.

Every tree under the root (``arc/``, ``vault/``, ``sessions/``) satisfies one contract,
:class:`canfarfs.fs.virtual.VirtualTree`; the adapter resolves an inode once
(:meth:`CanfarOps._place`) and calls the same methods whatever the tree. The root, the
control file and the top-level directories are the adapter's own.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import pyfuse3
import trio

from canfarfs import errors
from canfarfs.fs.attrs import Attr, dir_attr
from canfarfs.fs.control import CONTROL_NAME, ControlHandle, render, status_document
from canfarfs.fs.data import Data
from canfarfs.fs.inodes import ROOT, InodeTable
from canfarfs.fs.meta import Key
from canfarfs.fs.storage import Storage
from canfarfs.fs.storage_tree import StorageTree
from canfarfs.fs.unconfigured import Unconfigured
from canfarfs.fs.virtual import VirtualHandle, VirtualTree
from canfarfs.tasks import spawn

log = logging.getLogger(__name__)

TTL = 1.0
TOP = {"arc": 2, "vault": 3, "sessions": 4}
CONTROL_INO = 5
CONTROL_KEY = ("<control>", "")
NO_SKAHA = "no Skaha service configured (--skaha-url or --local)"
#: Everyday answers, logged at debug rather than a line per file at info: a name that
#: does not exist (every new file starts with one), an attribute that is not set, a
#: namespace that is not kept (ls, cp -p).
QUIET = frozenset({errno.ENOENT, errno.ENODATA, errno.ENOTSUP})
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def fuse_errors(fn: F) -> F:
    """Map every exception of a handler to an errno; unknown ones are EIO, logged."""

    name = fn.__name__

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        args[0].stats[name] += 1
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except errors.CanfarfsError as exc:
            level = logging.DEBUG if exc.errno in QUIET else logging.INFO
            log.log(
                level, "%s: %s (%s)", fn.__name__, exc, errno.errorcode.get(exc.errno, exc.errno)
            )
            raise pyfuse3.FUSEError(exc.errno) from None
        except trio.Cancelled:
            raise
        except Exception:
            log.exception("unexpected error in %s", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return cast(F, wrapper)


@dataclass(frozen=True)
class Place:
    """Where an inode lives: the tree mounted at ``top``, and the path inside it."""

    top: str
    tree: VirtualTree
    path: str

    @property
    def key(self) -> Key:
        """The inode table's key."""
        return (self.top, self.path)

    def child(self, name: str) -> Place:
        return Place(self.top, self.tree, f"{self.path}/{name}" if self.path else name)


@dataclass
class DirHandle:
    """A listing snapshot: (name, key, inode, attributes) per entry."""

    entries: list[tuple[bytes, Key, int, Attr]] = field(default_factory=list)
    #: Kernel cache time of each entry (the trees vary it; TTL if not given).
    ttls: dict[int, float] = field(default_factory=dict)


@dataclass
class FileHandle:
    """An open file: its inode, the tree's handle, and where it was opened (None for
    the control file)."""

    ino: int
    handle: VirtualHandle
    place: Place | None


class CanfarOps(pyfuse3.Operations):
    """The mount: ``arc/``, ``vault/`` and ``sessions/`` under one root."""

    enable_writeback_cache = False
    supports_dot_lookup = False

    def __init__(self, storage: Storage, sessions: VirtualTree | None = None) -> None:
        super().__init__()
        #: The trees under the root by name; every one takes the same calls.
        self.trees: dict[str, VirtualTree] = {
            "arc": StorageTree(storage, "arc"),
            "vault": StorageTree(storage, "vault"),
            "sessions": sessions if sessions is not None else Unconfigured(NO_SKAHA),
        }
        #: For the control file: the status it shows, the sync it runs.
        self.storage = storage
        self.nursery = storage.nursery
        self.inodes = InodeTable()
        self.inodes.fixed(ROOT, ("", "<root>"))
        for name, ino in TOP.items():
            self.inodes.fixed(ino, (name, ""))
        self.inodes.fixed(CONTROL_INO, CONTROL_KEY)
        self.started = time.monotonic()
        #: Counts of FUSE requests and bytes, shown by ``canfarfs status``.
        self.stats: Counter[str] = Counter()
        self.mountpoint = str(storage.config.mountpoint or "")
        self.handles: dict[int, DirHandle | FileHandle] = {}
        self._next_fh = 1
        self.uid = os.getuid()
        self.gid = os.getgid()

    # -- resolution ----------------------------------------------------------------------

    def _place(self, ino: int) -> Place:
        """The tree and path of ``ino``. The root and the control file are in no tree
        (EPERM); an inode whose name is gone is ENOENT."""
        if ino == ROOT:
            raise errors.NotPermitted("the mount root holds only arc, vault and sessions")
        if ino == CONTROL_INO:
            raise errors.NotPermitted("the control file is in no tree")
        key = self.inodes.key(ino)
        assert isinstance(key, tuple)
        top, path = cast(Key, key)
        if top not in self.trees:  # <deleted>, <replaced>
            raise errors.NotFound("deleted")
        return Place(top, self.trees[top], path)

    def _unlinked_attr(self, ino: int) -> Attr | None:
        """The attributes an open handle keeps for ``ino`` once its name is gone."""
        for h in self.handles.values():
            if isinstance(h, FileHandle) and h.ino == ino and h.place is not None:
                return h.place.tree.unlinked_attr(h.handle)
        return None

    async def _attr(self, ino: int) -> tuple[Attr, float]:
        """Attributes of ``ino`` and how long the kernel may keep them."""
        if ino == ROOT:
            return dir_attr(), TTL
        if ino == CONTROL_INO:
            mode = stat.S_IFREG | 0o600
            return Attr(mode=mode, size=len(self._status()), mtime_ns=time.time_ns()), TTL
        unlinked = self._unlinked_attr(ino)
        if unlinked is not None:
            return unlinked, TTL
        place = self._place(ino)
        return await place.tree.attr(place.path), await place.tree.attr_ttl(place.path)

    # -- helpers -------------------------------------------------------------------------

    def _new_fh(self, handle: DirHandle | FileHandle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = handle
        return fh

    def _entry(self, ino: int, a: Attr, ttl: float = TTL) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = pyfuse3.InodeT(ino)
        e.generation = 0
        e.entry_timeout = ttl
        e.attr_timeout = ttl
        e.st_mode = pyfuse3.ModeT(a.mode)
        e.st_nlink = a.nlink
        e.st_uid = self.uid
        e.st_gid = self.gid
        e.st_size = a.size
        e.st_blksize = 1024 * 1024
        e.st_blocks = a.blocks
        e.st_atime_ns = e.st_mtime_ns = e.st_ctime_ns = a.mtime_ns
        return e

    async def _entry_of(self, ino: int) -> pyfuse3.EntryAttributes:
        return self._entry(ino, *await self._attr(ino))

    async def _new_entry(self, place: Place) -> pyfuse3.EntryAttributes:
        """The entry of a name just made (or found): the kernel now holds its inode."""
        a = await place.tree.attr(place.path)
        ttl = await place.tree.attr_ttl(place.path)
        return self._entry(self.inodes.looked_up(place.key), a, ttl)

    def _status_doc(self) -> dict[str, Any]:
        return status_document(
            self.storage,
            mountpoint=self.mountpoint,
            started=self.started,
            extra={"fuse": dict(self.stats)},
        )

    def _status(self) -> bytes:
        return render(self._status_doc())

    @staticmethod
    def _name(raw: bytes) -> str:
        return os.fsdecode(raw)

    def _child(self, parent_inode: int, name: bytes) -> Place:
        return self._place(parent_inode).child(self._name(name))

    # -- metadata ------------------------------------------------------------------------

    @fuse_errors
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext | None = None
    ) -> pyfuse3.EntryAttributes:
        text = self._name(name)
        if parent_inode == ROOT:
            if text == CONTROL_NAME:
                return await self._entry_of(CONTROL_INO)
            if text not in TOP:
                raise errors.NotFound(text)
            return await self._entry_of(TOP[text])
        parent = self._place(parent_inode)
        place = parent.child(text)
        a = await parent.tree.lookup(parent.path, text)
        ttl = await place.tree.attr_ttl(place.path)
        return self._entry(self.inodes.looked_up(place.key), a, ttl)

    @fuse_errors
    async def getattr(
        self, inode: int, ctx: pyfuse3.RequestContext | None = None
    ) -> pyfuse3.EntryAttributes:
        return await self._entry_of(inode)

    @fuse_errors
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        if (fields.update_uid and attr.st_uid != self.uid) or (
            fields.update_gid and attr.st_gid != self.gid
        ):
            raise errors.NotPermitted("VOSpace nodes are owned by the mounting user")
        if inode == CONTROL_INO:
            return await self._entry_of(inode)
        handle = self.handles.get(fh) if fh is not None else None
        if fields.update_size:
            if isinstance(handle, FileHandle):  # also once the file's name is gone
                await handle.handle.truncate(attr.st_size)
            else:
                place = self._place(inode)
                await place.tree.truncate(place.path, attr.st_size)
        if fields.update_mode:
            place = self._place(inode)
            await place.tree.chmod(place.path, stat.S_IMODE(attr.st_mode))
        if (fields.update_mtime or fields.update_atime) and self._unlinked_attr(inode) is None:
            place = self._place(inode)
            await place.tree.utimens(place.path, attr.st_mtime_ns if fields.update_mtime else None)
        return await self._entry_of(inode)

    @fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        place = self._place(inode)
        return os.fsencode(await place.tree.readlink(place.path))

    @fuse_errors
    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, n in inode_list:
            self.inodes.forget(ino, n)

    # -- directories ---------------------------------------------------------------------

    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        """Snapshot the listing now; readdir offsets index into the snapshot."""
        handle = DirHandle()
        if inode == ROOT:
            for name, ino in TOP.items():
                try:
                    a, _ttl = await self._attr(ino)
                except errors.CanfarfsError:
                    a = dir_attr()
                handle.entries.append((name.encode(), (name, ""), ino, a))
            return self._new_fh(handle)
        place = self._place(inode)
        for name, a in await place.tree.listdir(place.path):
            child = place.child(name)
            handle.ttls[len(handle.entries)] = await place.tree.attr_ttl(child.path)
            handle.entries.append((os.fsencode(name), child.key, self.inodes.ino_for(child.key), a))
        return self._new_fh(handle)

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self.handles[fh]
        assert isinstance(handle, DirHandle)
        for i in range(start_id, len(handle.entries)):
            name, key, ino, a = handle.entries[i]
            entry = self._entry(ino, a, handle.ttls.get(i, TTL))
            if not pyfuse3.readdir_reply(token, name, entry, i + 1):
                return
            self.inodes.count_lookup(ino, key)

    @fuse_errors
    async def releasedir(self, fh: int) -> None:
        self.handles.pop(fh, None)

    @fuse_errors
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        place = self._child(parent_inode, name)
        await place.tree.mkdir(place.path)
        return await self._new_entry(place)

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        place = self._child(parent_inode, name)
        await place.tree.rmdir(place.path)
        self.inodes.detach(place.key)

    def _invalidate_companions(self, place: Place) -> None:
        """``place`` was written, removed or renamed: the names its tree says may have
        appeared or gone with it (a spec's ``.ids``/``.error``) lose their cached kernel
        entries now, instead of after the TTL."""
        for path in place.tree.companions(place.path):
            parent, _, name = path.rpartition("/")
            entry = self.inodes.by_key.get((place.top, parent))
            if entry is not None:
                pyfuse3.invalidate_entry_async(
                    pyfuse3.InodeT(entry.ino), os.fsencode(name), ignore_enoent=True
                )

    # -- files ---------------------------------------------------------------------------

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if inode == CONTROL_INO:
            if ctx.uid != self.uid and ctx.uid != 0:
                raise errors.PermissionDenied("only the mounting user may use the control file")
            control = ControlHandle(self.storage, self._status())
            fh = self._new_fh(FileHandle(inode, control, None))
            return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), direct_io=True)
        place = self._place(inode)
        handle = await place.tree.open(place.path, flags)
        self.inodes.opened(inode)
        fh = self._new_fh(FileHandle(inode, handle, place))
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), direct_io=handle.direct_io)

    @fuse_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        place = self._child(parent_inode, name)
        handle = await place.tree.create(place.path, flags)
        ino = self.inodes.looked_up(place.key)
        self.inodes.opened(ino)
        fh = self._new_fh(FileHandle(ino, handle, place))
        a = await place.tree.attr(place.path)
        ttl = await place.tree.attr_ttl(place.path)
        return (
            pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), direct_io=handle.direct_io),
            self._entry(ino, a, ttl),
        )

    @fuse_errors
    # pyfuse3 takes any contiguous buffer (handlers.pxi: PyObject_GetBuffer) though its
    # stub says bytes; read-ahead pieces are handed over as views, uncopied.
    async def read(self, fh: int, off: int, size: int) -> Data:  # type: ignore[override]
        self.stats["read_bytes"] += size
        handle = self.handles[fh]
        assert isinstance(handle, FileHandle)
        return await handle.handle.read(off, size)

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        self.stats["write_bytes"] += len(buf)
        handle = self.handles[fh]
        assert isinstance(handle, FileHandle)
        return await handle.handle.write(off, buf)

    @fuse_errors
    async def flush(self, fh: int) -> None:
        handle = self.handles[fh]
        if isinstance(handle, FileHandle):
            try:
                await handle.handle.flush()
            finally:
                if handle.place is not None:
                    self._invalidate_companions(handle.place)

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        handle = self.handles[fh]
        if isinstance(handle, FileHandle):
            try:
                await handle.handle.fsync()
            finally:
                if handle.place is not None:
                    self._invalidate_companions(handle.place)

    @fuse_errors
    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh, None)
        if not isinstance(handle, FileHandle):
            return
        try:
            await handle.handle.release()
        finally:
            if handle.ino != CONTROL_INO:
                self.inodes.closed(handle.ino)

    # -- namespace -----------------------------------------------------------------------

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        place = self._child(parent_inode, name)
        await place.tree.unlink(place.path)
        self.inodes.detach(place.key)
        self._invalidate_companions(place)

    @fuse_errors
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        if flags:
            raise errors.InvalidArgument("RENAME_EXCHANGE/NOREPLACE are not supported")
        src = self._child(parent_inode_old, name_old)
        dst = self._child(parent_inode_new, name_new)
        if src.top != dst.top:
            raise errors.CrossDevice(f"cannot move between {src.top}/ and {dst.top}/")
        try:
            await src.tree.rename(src.path, dst.path)  # sessions/ may launch: its errno
        except Exception:
            if await src.tree.moved_anyway(src.path):
                self._moved(src, dst)
            raise
        self._moved(src, dst)

    def _moved(self, src: Place, dst: Place) -> None:
        """``src`` is now ``dst``: its inode (and those below it) follow; one that was
        at ``dst`` loses its name."""
        self.inodes.detach(dst.key)
        self.inodes.rekey(src.key, dst.key)
        self._invalidate_companions(src)
        self._invalidate_companions(dst)

    @fuse_errors
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        """A regular file is made empty (as create and close would); VOSpace holds no
        FIFOs, sockets or device nodes (EPERM)."""
        if not stat.S_ISREG(mode):
            raise errors.NotPermitted(
                "VOSpace holds only files, directories and links: no FIFOs, sockets or device nodes"
            )
        place = self._child(parent_inode, name)
        await place.tree.mknod(place.path)
        return await self._new_entry(place)

    @fuse_errors
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        place = self._child(parent_inode, name)
        await place.tree.symlink(place.path, os.fsdecode(target))
        return await self._new_entry(place)

    @fuse_errors
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise errors.NotPermitted("VOSpace has no hard links")

    # -- xattrs and statfs ---------------------------------------------------------------

    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        # ls -l asks for security.selinux and system.posix_acl_access on every entry, and
        # the kernel asks for security.capability before every write: answer first, and
        # with ENOTSUP (the namespace is not supported, semantics.md), which coreutils
        # remembers per file system instead of asking again for every entry.
        if not name.startswith(b"user."):
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        if inode in (ROOT, CONTROL_INO):
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        place = self._place(inode)
        return await place.tree.getxattr(place.path, os.fsdecode(name))

    @fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        if inode in (ROOT, CONTROL_INO):
            return []
        place = self._place(inode)
        return [os.fsencode(n) for n in await place.tree.listxattr(place.path)]

    @fuse_errors
    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        place = self._place(inode)
        await place.tree.setxattr(place.path, os.fsdecode(name), value)
        self._invalidate_attrs(inode)

    @fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        place = self._place(inode)
        await place.tree.removexattr(place.path, os.fsdecode(name))
        self._invalidate_attrs(inode)

    def _invalidate_attrs(self, inode: int) -> None:
        """A property behind the mode bits may have changed (user.groupread, ...): drop
        the kernel's cached attributes now instead of after the TTL. From a thread,
        after this request: the notification must not wait on the request itself."""

        def invalidate() -> None:
            with contextlib.suppress(OSError):
                pyfuse3.invalidate_inode(pyfuse3.InodeT(inode), attr_only=True)

        spawn(
            self.nursery,
            trio.to_thread.run_sync,
            invalidate,
            what=f"invalidating the attributes of inode {inode}",
        )

    @fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        quota = used = 0
        for tree in self.trees.values():
            q, u = await tree.statfs()
            quota, used = quota + q, used + u
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_blocks = quota // 4096
        s.f_bfree = s.f_bavail = max(quota - used, 0) // 4096
        s.f_files = 1 << 20
        s.f_ffree = s.f_favail = 1 << 20
        s.f_namemax = 255
        return s
