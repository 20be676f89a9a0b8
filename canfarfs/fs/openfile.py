"""One state per open file, shared by every handle on it (docs/semantics.md, "Several
handles on one file").

However many processes open a file, and in whatever modes, the mount holds one
:class:`OpenFile` for it: one staged copy that every writer writes (so the last close
uploads the union of every acknowledged write), and one cached server copy that readers
read until a writer gives the file a staged copy, which readers then see too. The state
follows renames and outlives an unlink, so open handles keep their bytes the way a
local file system keeps an unlinked inode until the last close.

:class:`StorageHandle` is what ``open()`` returns: it satisfies the same handle
contract as the virtual trees (:class:`canfarfs.fs.virtual.VirtualHandle`), so the FUSE
adapter treats every open file alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from canfarfs import errors
from canfarfs.fs.data import Data
from canfarfs.fs.meta import Key
from canfarfs.fs.remote_file import RemoteFile
from canfarfs.fs.staging import Stage
from canfarfs.vospace.model import Node

if TYPE_CHECKING:
    from canfarfs.fs.storage import Storage


@dataclass(eq=False)
class OpenFile:
    """Everything open of one file."""

    key: Key
    #: Open handles (readers and writers alike), and of those the writers.
    handles: int = 0
    writers: int = 0
    #: The staged copy, once anyone opened the file for writing (readers see it too).
    stage: Stage | None = None
    #: The server's bytes as cached, for reading before (or without) a staged copy.
    remote: RemoteFile | None = None
    #: The node as last known, for attributes once the name is gone.
    node: Node | None = None
    #: The name was removed (unlink, or another file renamed over it): nothing is
    #: uploaded any more, and the open handles keep the bytes they had.
    unlinked: bool = False


class StorageHandle:
    """One open file description on arc or vault."""

    direct_io = False

    def __init__(self, storage: Storage, file: OpenFile, *, writable: bool) -> None:
        self.storage = storage
        self.file = file
        self.writable = writable
        self._released = False

    async def read(self, offset: int, size: int) -> Data:
        return await self.storage.read_file(self.file, offset, size)

    async def write(self, offset: int, data: bytes) -> int:
        if not self.writable:
            raise errors.CanfarfsError("file not open for writing")
        return await self.storage.write_file(self.file, offset, data)

    async def truncate(self, size: int) -> None:
        if not self.writable:
            raise errors.InvalidArgument("file not open for writing")
        await self.storage.truncate_file(self.file, size)

    async def flush(self) -> None:
        """Every close(): upload what this file holds (durable close), if written; with
        write-back, queue the upload."""
        if self.writable:
            await self.storage.flush_file(self.file)

    async def fsync(self) -> None:
        """fsync(): return only once the server holds the bytes (MD5 checked)."""
        if self.writable:
            await self.storage.fsync_file(self.file)

    async def release(self) -> None:
        if not self._released:
            self._released = True
            if self.writable:
                self.file.writers -= 1
            await self.storage.release_file(self.file)
