"""A tree whose service the mount was not given (``sessions/`` without a Skaha URL): an
empty directory, and EPERM saying what to configure for anything else."""

from __future__ import annotations

from typing import NoReturn

from canfarfs import errors
from canfarfs.fs.attrs import Attr, dir_attr
from canfarfs.fs.virtual import VirtualHandle

TTL = 1.0


class Unconfigured:
    """Satisfies :class:`canfarfs.fs.virtual.VirtualTree`; ``why`` is the EPERM message."""

    def __init__(self, why: str) -> None:
        self.why = why

    def _refuse(self) -> NoReturn:
        raise errors.NotPermitted(self.why)

    async def attr(self, path: str) -> Attr:
        if path:
            self._refuse()
        return dir_attr()

    async def attr_ttl(self, path: str) -> float:
        return TTL

    async def lookup(self, parent: str, name: str) -> Attr:
        self._refuse()

    async def listdir(self, path: str) -> list[tuple[str, Attr]]:
        return []

    async def readlink(self, path: str) -> str:
        self._refuse()

    def unlinked_attr(self, handle: VirtualHandle) -> Attr | None:
        return None

    async def open(self, path: str, flags: int) -> VirtualHandle:
        self._refuse()

    async def create(self, path: str, flags: int) -> VirtualHandle:
        self._refuse()

    async def mknod(self, path: str) -> None:
        self._refuse()

    async def unlink(self, path: str) -> None:
        self._refuse()

    async def rmdir(self, path: str) -> None:
        self._refuse()

    async def mkdir(self, path: str) -> None:
        self._refuse()

    async def rename(self, src: str, dst: str) -> None:
        self._refuse()

    async def moved_anyway(self, src: str) -> bool:
        return False

    async def symlink(self, path: str, target: str) -> None:
        self._refuse()

    def companions(self, path: str) -> list[str]:
        return []

    async def truncate(self, path: str, size: int) -> None:
        self._refuse()

    async def chmod(self, path: str, mode: int) -> None:
        self._refuse()

    async def utimens(self, path: str, mtime_ns: int | None) -> None:
        self._refuse()

    async def getxattr(self, path: str, name: str) -> bytes:
        raise errors.NoAttribute(f"{name}: no extended attributes here")

    async def listxattr(self, path: str) -> list[str]:
        return []

    async def setxattr(self, path: str, name: str, value: bytes) -> None:
        raise errors.NotSupported("no extended attributes here")

    async def removexattr(self, path: str, name: str) -> None:
        self._refuse()

    async def statfs(self) -> tuple[int, int]:
        return (0, 0)
