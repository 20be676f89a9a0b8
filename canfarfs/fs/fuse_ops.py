"""The thin pyfuse3 adapter: decode names, look up inodes and handles, call the core,
turn errors into errnos. No file-system logic lives here."""

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
from canfarfs.fs.meta import Key, child_key
from canfarfs.fs.openfile import StorageHandle
from canfarfs.fs.storage import Storage
from canfarfs.fs.virtual import VirtualHandle, VirtualTree
from canfarfs.tasks import spawn

log = logging.getLogger(__name__)

TTL = 1.0
TOP = {"arc": 2, "vault": 3, "sessions": 4}
SESSIONS_KEY = ("sessions", "")
CONTROL_INO = 5
CONTROL_KEY = ("<control>", "")
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
            # A name that does not exist is the everyday answer to lookup (every new
            # file starts with one): debug, not a log line per file at info.
            level = logging.DEBUG if exc.errno == errno.ENOENT else logging.INFO
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


@dataclass
class DirHandle:
    """A listing snapshot: (name, key, inode, attributes) per entry."""

    entries: list[tuple[bytes, Key, int, Attr]] = field(default_factory=list)
    #: Kernel cache time of each entry (virtual trees vary it; storage uses TTL).
    ttls: dict[int, float] = field(default_factory=dict)


@dataclass
class FileHandle:
    """An open file: its inode, the key it was opened by, and the tree's handle (storage
    and virtual trees alike satisfy :class:`VirtualHandle`)."""

    ino: int
    key: Key
    handle: VirtualHandle


class CanfarOps(pyfuse3.Operations):
    """The mount: ``arc/``, ``vault/`` and ``sessions/`` under one root."""

    enable_writeback_cache = False
    supports_dot_lookup = False

    def __init__(self, storage: Storage, sessions: VirtualTree | None = None) -> None:
        super().__init__()
        self.storage = storage
        self.sessions = sessions
        self.inodes = InodeTable()
        self.inodes.fixed(ROOT, ("", "<root>"))
        for name, ino in TOP.items():
            self.inodes.fixed(ino, (name, "") if name != "sessions" else SESSIONS_KEY)
        self.inodes.fixed(CONTROL_INO, CONTROL_KEY)
        self.started = time.monotonic()
        #: Counts of FUSE requests and bytes, shown by ``canfarfs status``.
        self.stats: Counter[str] = Counter()
        self.mountpoint = str(storage.config.mountpoint or "")
        self.handles: dict[int, DirHandle | FileHandle] = {}
        self._next_fh = 1
        self.uid = os.getuid()
        self.gid = os.getgid()

    # -- helpers -------------------------------------------------------------------------

    def _new_fh(self, handle: DirHandle | FileHandle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = handle
        return fh

    def _key(self, ino: int) -> Key:
        key = self.inodes.key(ino)
        assert isinstance(key, tuple)
        if key[0] in ("<deleted>", "<replaced>"):
            raise errors.NotFound("deleted")
        return cast(Key, key)

    def _virtual_path(self, ino: int) -> str | None:
        """The path inside sessions/ of ``ino``, or None for a storage inode."""
        if ino == TOP["sessions"]:
            return ""
        if ino in (ROOT, CONTROL_INO):
            return None
        key = self.inodes.key(ino)
        assert isinstance(key, tuple)
        return str(key[1]) if key[0] == "sessions" else None

    def _tree(self) -> VirtualTree:
        if self.sessions is None:
            raise errors.NotPermitted("no Skaha service configured (--skaha-url or --local)")
        return self.sessions

    def _storage_key(self, ino: int) -> Key:
        key = self._key(ino)
        if key[0] not in self.storage.clients:
            raise errors.NotPermitted("not a storage path")
        return key

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

    def _status(self) -> bytes:
        open_files = sum(
            1
            for h in self.handles.values()
            if isinstance(h, FileHandle) and isinstance(h.handle, StorageHandle)
        )
        return render(
            status_document(
                self.storage,
                mountpoint=self.mountpoint,
                open_files=open_files,
                started=self.started,
                extra={"fuse": dict(self.stats)},
            )
        )

    async def _attr(self, ino: int) -> Attr:
        if ino == ROOT or (ino == TOP["sessions"] and self.sessions is None):
            return dir_attr()
        if ino == TOP["sessions"]:
            return await self._tree().attr("")
        if ino == CONTROL_INO:
            return Attr(
                mode=stat.S_IFREG | 0o600, size=len(self._status()), mtime_ns=time.time_ns()
            )
        opened = self._open_storage_file(ino)
        if opened is not None and opened.file.unlinked:  # open, its name gone (unlink)
            return self.storage.file_attr(opened.file)
        key = self._key(ino)
        if key[0] == "sessions":
            return await self._tree().attr(key[1])
        if not key[1]:
            a = await self.storage.attr(key)
            return Attr(mode=stat.S_IFDIR | 0o755, size=0, mtime_ns=a.mtime_ns, nlink=2)
        return await self.storage.attr(key)

    def _unlinked_open(self, ino: int) -> bool:
        opened = self._open_storage_file(ino)
        return opened is not None and opened.file.unlinked

    def _open_storage_file(self, ino: int) -> StorageHandle | None:
        """A storage handle open on ``ino``, if any."""
        for h in self.handles.values():
            if isinstance(h, FileHandle) and h.ino == ino and isinstance(h.handle, StorageHandle):
                return h.handle
        return None

    @staticmethod
    def _name(raw: bytes) -> str:
        return os.fsdecode(raw)

    # -- metadata ------------------------------------------------------------------------

    @fuse_errors
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext | None = None
    ) -> pyfuse3.EntryAttributes:
        text = self._name(name)
        if parent_inode == ROOT:
            if text == CONTROL_NAME:
                return self._entry(CONTROL_INO, await self._attr(CONTROL_INO))
            if text not in TOP:
                raise errors.NotFound(text)
            ino = TOP[text]
            return self._entry(ino, await self._attr(ino))
        vpath = self._virtual_path(parent_inode)
        if vpath is not None:
            tree = self._tree()
            path = f"{vpath}/{text}" if vpath else text
            a = await tree.attr(path)
            ttl = await tree.attr_ttl(path)
            return self._entry(self.inodes.looked_up(("sessions", path)), a, ttl)
        parent = self._storage_key(parent_inode)
        node_key = child_key(parent, text)
        await self.storage.lookup(parent, text)
        a = await self.storage.attr(node_key)
        return self._entry(self.inodes.looked_up(node_key), a)

    @fuse_errors
    async def getattr(
        self, inode: int, ctx: pyfuse3.RequestContext | None = None
    ) -> pyfuse3.EntryAttributes:
        vpath = self._virtual_path(inode)
        if vpath is not None and self.sessions is not None:
            return self._entry(
                inode, await self.sessions.attr(vpath), await self.sessions.attr_ttl(vpath)
            )
        return self._entry(inode, await self._attr(inode))

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
            return self._entry(inode, await self._attr(inode))
        vpath = self._virtual_path(inode)
        if vpath is not None:
            return await self._setattr_virtual(inode, vpath, attr, fields, fh)
        if fields.update_size:
            handle = self.handles.get(fh) if fh is not None else None
            if isinstance(handle, FileHandle) and isinstance(handle.handle, StorageHandle):
                await handle.handle.truncate(attr.st_size)
            else:
                await self.storage.truncate(self._storage_key(inode), attr.st_size)
        if fields.update_mode:
            await self.storage.chmod(self._storage_key(inode), stat.S_IMODE(attr.st_mode))
        if fields.update_mtime and not self._unlinked_open(inode):
            await self.storage.set_mtime(self._storage_key(inode), attr.st_mtime_ns)
        # atime alone: accepted without effect (VOSpace keeps no access time).
        return self._entry(inode, await self._attr(inode))

    async def _setattr_virtual(
        self,
        inode: int,
        vpath: str,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
    ) -> pyfuse3.EntryAttributes:
        tree = self._tree()
        if fields.update_mode and stat.S_IMODE(attr.st_mode) != stat.S_IMODE(
            (await tree.attr(vpath)).mode
        ):  # chmod to the same mode (vim, cp -p): fine
            raise errors.NotPermitted("sessions/ entries have fixed permissions")
        if fields.update_size:
            handle = self.handles.get(fh) if fh is not None else None
            if isinstance(handle, FileHandle):
                await handle.handle.truncate(attr.st_size)
            else:
                await tree.truncate(vpath, attr.st_size)
        if fields.update_mtime or fields.update_atime:
            await tree.utimens(vpath, attr.st_mtime_ns if fields.update_mtime else None)
        return self._entry(inode, await tree.attr(vpath), await tree.attr_ttl(vpath))

    @fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        vpath = self._virtual_path(inode)
        if vpath is not None:
            return os.fsencode(await self._tree().readlink(vpath))
        return os.fsencode(await self.storage.readlink(self._storage_key(inode)))

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
                    a = await self._attr(ino)
                except errors.CanfarfsError:
                    a = dir_attr()
                key = self._key(ino)
                handle.entries.append((name.encode(), key, ino, a))
        elif (vpath := self._virtual_path(inode)) is not None:
            if self.sessions is not None:
                for name, a in await self.sessions.listdir(vpath):
                    key = ("sessions", f"{vpath}/{name}" if vpath else name)
                    handle.ttls[len(handle.entries)] = await self.sessions.attr_ttl(key[1])
                    handle.entries.append((os.fsencode(name), key, self.inodes.ino_for(key), a))
        else:
            key = self._storage_key(inode)
            for name, _node in await self.storage.listdir(key):
                ck = child_key(key, name)
                try:
                    a = await self.storage.attr(ck)
                except errors.CanfarfsError:
                    continue
                handle.entries.append((os.fsencode(name), ck, self.inodes.ino_for(ck), a))
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
        parent = self._writable_dir(parent_inode)
        if parent[0] == "sessions":
            path = self._join(parent, self._name(name))
            await self._tree().mkdir(path)
            return self._entry(
                self.inodes.looked_up(("sessions", path)), await self._tree().attr(path)
            )
        key = child_key(parent, self._name(name))
        await self.storage.mkdir(key)
        return self._entry(self.inodes.looked_up(key), await self.storage.attr(key))

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self._writable_dir(parent_inode)
        if parent[0] == "sessions":
            path = self._join(parent, self._name(name))
            await self._tree().rmdir(path)
            self.inodes.detach(("sessions", path))
            return
        key = child_key(parent, self._name(name))
        await self.storage.rmdir(key)
        self.inodes.detach(key)

    def _writable_dir(self, parent_inode: int) -> Key:
        if parent_inode == ROOT:
            raise errors.NotPermitted("the mount root holds only arc, vault and sessions")
        vpath = self._virtual_path(parent_inode)
        if vpath is not None:
            self._tree()
            return ("sessions", vpath)
        return self._storage_key(parent_inode)

    async def _virtual_gone(self, path: str) -> bool:
        try:
            await self._tree().attr(path)
        except errors.NotFound:
            return True
        return False

    @staticmethod
    def _join(parent: Key, name: str) -> str:
        return f"{parent[1]}/{name}" if parent[1] else name

    def _invalidate_companions(self, path: str) -> None:
        """A spec was written or removed: its ``.ids``/``.error`` may have appeared or
        gone, so drop the kernel's cached entries for them (no waiting for the TTL)."""
        parent, _, name = path.rpartition("/")
        parent_ino = (
            TOP["sessions"]
            if not parent
            else getattr(self.inodes.by_key.get(("sessions", parent)), "ino", None)
        )
        if parent_ino is None:
            return
        for suffix in (".ids", ".error"):
            pyfuse3.invalidate_entry_async(
                pyfuse3.InodeT(parent_ino), os.fsencode(name + suffix), ignore_enoent=True
            )

    # -- files ---------------------------------------------------------------------------

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if inode == CONTROL_INO:
            if ctx.uid != self.uid and ctx.uid != 0:
                raise errors.PermissionDenied("only the mounting user may use the control file")
            control = ControlHandle(self.storage, self._status())
            fh = self._new_fh(FileHandle(inode, CONTROL_KEY, control))
            return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), direct_io=True)
        vpath = self._virtual_path(inode)
        if vpath is not None:
            vhandle = await self._tree().open(vpath, flags)
            self.inodes.opened(inode)
            vfh = self._new_fh(FileHandle(inode, ("sessions", vpath), vhandle))
            return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(vfh), direct_io=vhandle.direct_io)
        key = self._storage_key(inode)
        if flags & (os.O_WRONLY | os.O_RDWR):
            handle = await self.storage.open_write(
                key, truncate=bool(flags & os.O_TRUNC), create=False
            )
        else:
            handle = await self.storage.open_read(key)
        self.inodes.opened(inode)
        return pyfuse3.FileInfo(
            fh=pyfuse3.FileHandleT(self._new_fh(FileHandle(inode, key, handle)))
        )

    @fuse_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self._writable_dir(parent_inode)
        if parent[0] == "sessions":
            path = self._join(parent, self._name(name))
            vhandle = await self._tree().create(path, flags)
            vkey = ("sessions", path)
            vino = self.inodes.looked_up(vkey)
            self.inodes.opened(vino)
            vfh = self._new_fh(FileHandle(vino, vkey, vhandle))
            return (
                pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(vfh), direct_io=vhandle.direct_io),
                self._entry(vino, await self._tree().attr(path), await self._tree().attr_ttl(path)),
            )
        key = child_key(parent, self._name(name))
        handle = await self.storage.open_write(
            key, truncate=True, create=True, exclusive=bool(flags & os.O_EXCL)
        )
        ino = self.inodes.looked_up(key)
        self.inodes.opened(ino)
        fh = self._new_fh(FileHandle(ino, key, handle))
        return (
            pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh)),
            self._entry(ino, await self.storage.attr(key)),
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
                if handle.key[0] == "sessions":
                    self._invalidate_companions(handle.key[1])

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.flush(fh)

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
        parent = self._writable_dir(parent_inode)
        if parent[0] == "sessions":
            path = self._join(parent, self._name(name))
            await self._tree().unlink(path)
            self.inodes.detach(("sessions", path))
            self._invalidate_companions(path)
            return
        key = child_key(parent, self._name(name))
        await self.storage.unlink(key)
        self.inodes.detach(key)

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
        src_dir = self._writable_dir(parent_inode_old)
        dst_dir = self._writable_dir(parent_inode_new)
        if "sessions" in (src_dir[0], dst_dir[0]):
            if src_dir[0] != dst_dir[0]:
                raise errors.CrossDevice("cannot move between sessions/ and storage")
            src_path = self._join(src_dir, self._name(name_old))
            dst_path = self._join(dst_dir, self._name(name_new))
            try:
                await self._tree().rename(src_path, dst_path)  # may launch: its errno
            finally:
                if await self._virtual_gone(src_path):  # moved, even if the launch failed
                    self.inodes.detach(("sessions", dst_path))
                    self.inodes.rekey(("sessions", src_path), ("sessions", dst_path))
                    self._invalidate_companions(src_path)
                    self._invalidate_companions(dst_path)
            return
        src = child_key(src_dir, self._name(name_old))
        dst = child_key(dst_dir, self._name(name_new))
        await self.storage.rename(src, dst)
        self.inodes.detach(dst)
        self.inodes.rekey(src, dst)

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
        parent = self._writable_dir(parent_inode)
        if parent[0] == "sessions":
            raise errors.NotPermitted("sessions/ specs are written with open(), not mknod")
        key = child_key(parent, self._name(name))
        handle = await self.storage.open_write(key, truncate=True, create=True, exclusive=True)
        try:
            await handle.flush()
        finally:
            await handle.release()
        return self._entry(self.inodes.looked_up(key), await self.storage.attr(key))

    @fuse_errors
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._writable_dir(parent_inode)
        if parent[0] == "sessions":
            raise errors.NotPermitted("sessions/ holds only the server's sessions and specs")
        key = child_key(parent, self._name(name))
        await self.storage.symlink(key, os.fsdecode(target))
        return self._entry(self.inodes.looked_up(key), await self.storage.attr(key))

    @fuse_errors
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise errors.NotPermitted("VOSpace has no hard links")

    # -- xattrs and statfs ---------------------------------------------------------------

    @staticmethod
    def _xattr_name(name: bytes) -> str:
        text = os.fsdecode(name)
        if not text.startswith("user."):
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        return text[len("user.") :]

    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        # ls -l asks for security.selinux and system.posix_acl_access on every entry, and
        # the kernel asks for security.capability before every write: answer first, and
        # with ENOTSUP (the namespace is not supported, semantics.md), which coreutils
        # remembers per file system instead of asking again for every entry.
        if not name.startswith(b"user."):
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        if inode in (ROOT, TOP["sessions"], CONTROL_INO) or self._virtual_path(inode) is not None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        key = self._storage_key(inode)
        try:
            return await self.storage.getxattr(key, self._xattr_name(name))
        except pyfuse3.FUSEError as exc:
            if exc.errno == errno.ENOTSUP:
                raise pyfuse3.FUSEError(pyfuse3.ENOATTR) from None
            raise

    @fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        if inode in (ROOT, TOP["sessions"], CONTROL_INO) or self._virtual_path(inode) is not None:
            return []
        names = await self.storage.listxattr(self._storage_key(inode))
        return [os.fsencode("user." + n) for n in names]

    @fuse_errors
    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        if self._virtual_path(inode) is not None:
            raise pyfuse3.FUSEError(errno.ENOTSUP)  # cp -p, vim: ACLs unsupported → fchmod
        await self.storage.setxattr(self._storage_key(inode), self._xattr_name(name), value)
        self._invalidate_attrs(inode)

    def _invalidate_attrs(self, inode: int) -> None:
        """A property behind the mode bits may have changed (user.groupread, ...): drop
        the kernel's cached attributes now instead of after the TTL. From a thread,
        after this request: the notification must not wait on the request itself."""

        def invalidate() -> None:
            with contextlib.suppress(OSError):
                pyfuse3.invalidate_inode(pyfuse3.InodeT(inode), attr_only=True)

        spawn(
            self.storage.nursery,
            trio.to_thread.run_sync,
            invalidate,
            what=f"invalidating the attributes of inode {inode}",
        )

    @fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self.storage.removexattr(self._storage_key(inode), self._xattr_name(name))
        self._invalidate_attrs(inode)

    @fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        quota = used = 0
        for service in self.storage.clients:
            q, u = await self.storage.statfs(service)
            quota, used = quota + q, used + u
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_blocks = quota // 4096
        s.f_bfree = s.f_bavail = max(quota - used, 0) // 4096
        s.f_files = 1 << 20
        s.f_ffree = s.f_favail = 1 << 20
        s.f_namemax = 255
        return s
