"""The contract between the FUSE adapter and a virtual tree (``sessions/``).

A virtual tree is FUSE-free: paths are strings relative to the tree's root ('' is the
root), errors are :mod:`canfarfs.errors`. The adapter gives every path an inode, keeps
lookup counts, and maps errors to errnos.
"""

from __future__ import annotations

from typing import Protocol

from canfarfs.fs.attrs import Attr
from canfarfs.fs.data import Data


class VirtualHandle(Protocol):
    """An open file of a virtual tree."""

    #: Serve reads straight from ``read`` (content that changes while open, like logs).
    direct_io: bool

    async def read(self, offset: int, size: int) -> Data: ...

    async def write(self, offset: int, data: bytes) -> int: ...

    async def truncate(self, size: int) -> None: ...

    async def flush(self) -> None:
        """Called on every close(); an error here is what close() returns."""

    async def release(self) -> None: ...


class VirtualTree(Protocol):
    """A directory tree the adapter mounts at one name under the root."""

    async def attr(self, path: str) -> Attr:
        """Attributes; NotFound if absent. Sizes are true sizes."""

    async def attr_ttl(self, path: str) -> float:
        """How long the kernel may cache ``path``'s attributes and entry (seconds)."""

    async def listdir(self, path: str) -> list[tuple[str, Attr]]: ...

    async def readlink(self, path: str) -> str: ...

    async def open(self, path: str, flags: int) -> VirtualHandle:
        """Open an existing file (``flags`` as in open(2))."""

    async def create(self, path: str, flags: int) -> VirtualHandle:
        """Create and open a file (writing a spec). EPERM where files cannot be made."""

    async def unlink(self, path: str) -> None: ...

    async def rmdir(self, path: str) -> None: ...

    async def mkdir(self, path: str) -> None: ...

    async def rename(self, src: str, dst: str) -> None: ...

    async def touch(self, path: str) -> None:
        """utimens on ``path`` (renews a session)."""

    async def truncate(self, path: str, size: int) -> None:
        """truncate(2) without an open handle."""
