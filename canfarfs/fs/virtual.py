"""The contract between the FUSE adapter and the trees it mounts under the root.

Every tree is FUSE-free and reached by paths: ``arc/`` and ``vault/`` are
:class:`canfarfs.fs.storage_tree.StorageTree` (a view of the storage core by path),
``sessions/`` is :class:`canfarfs.sessions.tree.SessionsTree`. A path is a string
relative to the tree's root ('' is the root), an error is a :mod:`canfarfs.errors`
exception. The adapter resolves an inode to its tree and path once, then calls the same
methods whatever the tree; it gives every path an inode, keeps lookup counts, and maps
errors to errnos. What a tree cannot do it refuses with the errno it means.
"""

from __future__ import annotations

from typing import Protocol

from canfarfs.fs.attrs import Attr
from canfarfs.fs.data import Data


class VirtualHandle(Protocol):
    """An open file of a tree (and of the control file)."""

    #: Serve reads straight from ``read`` (content that changes while open, like logs).
    direct_io: bool

    async def read(self, offset: int, size: int) -> Data: ...

    async def write(self, offset: int, data: bytes) -> int: ...

    async def truncate(self, size: int) -> None: ...

    async def flush(self) -> None:
        """Called on every close(); an error here is what close() returns."""

    async def fsync(self) -> None:
        """fsync(2); an error here is what fsync() returns."""

    async def release(self) -> None: ...


class VirtualTree(Protocol):
    """A directory tree the adapter mounts at one name under the root."""

    # -- reading

    async def attr(self, path: str) -> Attr:
        """Attributes; NotFound if absent. Sizes are true sizes."""

    async def attr_ttl(self, path: str) -> float:
        """How long the kernel may cache ``path``'s attributes and entry (seconds)."""

    async def lookup(self, parent: str, name: str) -> Attr:
        """The attributes of ``name`` in directory ``parent`` (the tree checks the name)."""

    async def listdir(self, path: str) -> list[tuple[str, Attr]]: ...

    async def readlink(self, path: str) -> str: ...

    def unlinked_attr(self, handle: VirtualHandle) -> Attr | None:
        """The attributes of the file open through ``handle`` (one this tree opened) once
        its name is gone (unlinked, or replaced by a rename) while the handle keeps its
        bytes; None while the name stands, or where handles do not outlive names."""

    # -- files

    async def open(self, path: str, flags: int) -> VirtualHandle:
        """Open an existing file (``flags`` as in open(2): O_TRUNC truncates)."""

    async def create(self, path: str, flags: int) -> VirtualHandle:
        """Create and open a file (O_EXCL: EEXIST if it exists). EPERM where files
        cannot be made."""

    async def mknod(self, path: str) -> None:
        """Make an empty regular file (EEXIST if it exists)."""

    # -- the namespace

    async def unlink(self, path: str) -> None: ...

    async def rmdir(self, path: str) -> None: ...

    async def mkdir(self, path: str) -> None: ...

    async def rename(self, src: str, dst: str) -> None: ...

    async def moved_anyway(self, src: str) -> bool:
        """After ``rename(src, …)`` raised: whether ``src`` moved all the same (a spec
        whose launch under its new name failed), so that its inode follows it."""

    async def symlink(self, path: str, target: str) -> None: ...

    def companions(self, path: str) -> list[str]:
        """Paths that may appear or go when ``path`` is written, removed or renamed
        (a spec's ``.ids`` and ``.error``): the kernel's entries for them are dropped."""

    # -- attributes

    async def truncate(self, path: str, size: int) -> None:
        """truncate(2) without an open handle."""

    async def chmod(self, path: str, mode: int) -> None:
        """Permission bits (no file type)."""

    async def utimens(self, path: str, mtime_ns: int | None) -> None:
        """utimensat(2): ``mtime_ns`` None when only the access time is set."""

    async def getxattr(self, path: str, name: str) -> bytes:
        """An extended attribute by its full name (``user.…``); NoAttribute if unset."""

    async def listxattr(self, path: str) -> list[str]:
        """The full names of the extended attributes ``path`` has."""

    async def setxattr(self, path: str, name: str, value: bytes) -> None: ...

    async def removexattr(self, path: str, name: str) -> None: ...

    async def statfs(self) -> tuple[int, int]:
        """(quota, used) bytes of the user's allocation in this tree; (0, 0) if none."""
