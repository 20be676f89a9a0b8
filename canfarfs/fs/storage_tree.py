"""``arc/`` or ``vault/`` as the FUSE adapter sees every tree: paths in, attributes,
listings and handles out (:class:`canfarfs.fs.virtual.VirtualTree`).

A thin layer over the storage core: each path becomes the key ``(service, path)`` and
each call one call of :class:`canfarfs.fs.storage.Storage`, which holds the file-system
logic. What is here is what only the mount needs: open(2) flags, the top directory's
attributes, and the ``user.`` namespace of extended attributes.
"""

from __future__ import annotations

import os
import stat

from canfarfs import errors
from canfarfs.fs.attrs import Attr
from canfarfs.fs.meta import Key
from canfarfs.fs.openfile import StorageHandle
from canfarfs.fs.storage import Storage
from canfarfs.fs.virtual import VirtualHandle

#: How long the kernel may cache entries and attributes (seconds).
TTL = 1.0
#: The one namespace of extended attributes: ``user.<name>`` is the node's property.
XATTR_PREFIX = "user."


class StorageTree:
    """One storage service of ``storage`` as a tree of paths."""

    def __init__(self, storage: Storage, service: str) -> None:
        self.storage = storage
        self.service = service

    def _key(self, path: str) -> Key:
        return (self.service, path)

    @staticmethod
    def _join(parent: str, name: str) -> str:
        return f"{parent}/{name}" if parent else name

    # -- reading

    async def attr(self, path: str) -> Attr:
        a = await self.storage.attr(self._key(path))
        if not path:  # the mount's arc/ or vault/: a directory the user may enter
            return Attr(mode=stat.S_IFDIR | 0o755, size=0, mtime_ns=a.mtime_ns, nlink=2)
        return a

    async def attr_ttl(self, path: str) -> float:
        return TTL

    async def lookup(self, parent: str, name: str) -> Attr:
        await self.storage.lookup(self._key(parent), name)
        return await self.attr(self._join(parent, name))

    async def listdir(self, path: str) -> list[tuple[str, Attr]]:
        """Every child with its attributes; one whose attributes fail is left out."""
        out = []
        for name, _node in await self.storage.listdir(self._key(path)):
            try:
                out.append((name, await self.attr(self._join(path, name))))
            except errors.CanfarfsError:
                continue
        return out

    async def readlink(self, path: str) -> str:
        return await self.storage.readlink(self._key(path))

    def unlinked_attr(self, handle: VirtualHandle) -> Attr | None:
        if isinstance(handle, StorageHandle) and handle.file.unlinked:
            return self.storage.file_attr(handle.file)
        return None

    # -- files

    async def open(self, path: str, flags: int) -> StorageHandle:
        if flags & (os.O_WRONLY | os.O_RDWR):
            return await self.storage.open_write(
                self._key(path), truncate=bool(flags & os.O_TRUNC), create=False
            )
        return await self.storage.open_read(self._key(path))

    async def create(self, path: str, flags: int) -> StorageHandle:
        return await self.storage.open_write(
            self._key(path), truncate=True, create=True, exclusive=bool(flags & os.O_EXCL)
        )

    async def mknod(self, path: str) -> None:
        """As create and close would: the empty file is on the server on return (with
        write-back, queued)."""
        handle = await self.storage.open_write(
            self._key(path), truncate=True, create=True, exclusive=True
        )
        try:
            await handle.flush()
        finally:
            await handle.release()

    # -- the namespace

    async def unlink(self, path: str) -> None:
        await self.storage.unlink(self._key(path))

    async def rmdir(self, path: str) -> None:
        await self.storage.rmdir(self._key(path))

    async def mkdir(self, path: str) -> None:
        await self.storage.mkdir(self._key(path))

    async def rename(self, src: str, dst: str) -> None:
        await self.storage.rename(self._key(src), self._key(dst))

    async def moved_anyway(self, src: str) -> bool:
        return False  # a rename that raised left the name where it was

    async def symlink(self, path: str, target: str) -> None:
        await self.storage.symlink(self._key(path), target)

    def companions(self, path: str) -> list[str]:
        return []

    # -- attributes

    async def truncate(self, path: str, size: int) -> None:
        await self.storage.truncate(self._key(path), size)

    async def chmod(self, path: str, mode: int) -> None:
        await self.storage.chmod(self._key(path), mode)

    async def utimens(self, path: str, mtime_ns: int | None) -> None:
        if mtime_ns is not None:  # the access time alone: VOSpace keeps none
            await self.storage.set_mtime(self._key(path), mtime_ns)

    @staticmethod
    def _property(name: str) -> str:
        """The property behind ``user.<name>``; ENOTSUP for other namespaces."""
        if not name.startswith(XATTR_PREFIX):
            raise errors.NotSupported(f"{name}: only user.* attributes are kept")
        return name[len(XATTR_PREFIX) :]

    async def getxattr(self, path: str, name: str) -> bytes:
        return await self.storage.getxattr(self._key(path), self._property(name))

    async def listxattr(self, path: str) -> list[str]:
        return [XATTR_PREFIX + n for n in await self.storage.listxattr(self._key(path))]

    async def setxattr(self, path: str, name: str, value: bytes) -> None:
        await self.storage.setxattr(self._key(path), self._property(name), value)

    async def removexattr(self, path: str, name: str) -> None:
        await self.storage.removexattr(self._key(path), self._property(name))

    async def statfs(self) -> tuple[int, int]:
        return await self.storage.statfs(self.service)
