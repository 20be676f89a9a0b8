"""Arc as job arrays need it (:class:`canfarfs.sessions.arrays.ArcFiles`), through the
mount's own :class:`Storage`: globs see what ``ls`` sees (staged files included), and the
manifests are written like any file, durable at close, so the mount shows them at once.
"""

from __future__ import annotations

import contextlib

from canfarfs import errors
from canfarfs.fs.storage import Storage
from canfarfs.vospace.model import NodeType

SERVICE = "arc"


class StorageArcFiles:
    """Arc paths relative to its root (``home/me/x``), on ``storage``."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def entries(self, path: str) -> list[tuple[str, bool]]:
        return [
            (name, node.type is NodeType.CONTAINER)
            for name, node in await self.storage.listdir((SERVICE, path))
        ]

    async def exists(self, path: str) -> bool:
        try:
            await self.storage.node((SERVICE, path))
        except errors.NotFound:
            return False
        return True

    async def makedirs(self, path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            here = "/".join(parts[:i])
            try:
                node = await self.storage.node((SERVICE, here))
            except errors.NotFound:
                with contextlib.suppress(errors.AlreadyExists):  # made meanwhile
                    await self.storage.mkdir((SERVICE, here))
                continue
            if node.type is not NodeType.CONTAINER:
                raise errors.NotADirectory(f"/arc/{here} is not a directory")

    async def mkdir(self, path: str) -> None:
        await self.storage.mkdir((SERVICE, path))

    async def write(self, path: str, data: bytes) -> None:
        handle = await self.storage.open_write((SERVICE, path), truncate=True, create=True)
        try:
            await handle.write(0, data)
            await handle.fsync()  # on the server before a session can look, write-back or not
        finally:
            await handle.release()

    async def read(self, path: str) -> bytes:
        handle = await self.storage.open_read((SERVICE, path))
        try:
            chunks: list[bytes] = []
            offset = 0
            while True:
                piece = bytes(await handle.read(offset, 1 << 20))
                if not piece:
                    return b"".join(chunks)
                chunks.append(piece)
                offset += len(piece)
        finally:
            await handle.release()
