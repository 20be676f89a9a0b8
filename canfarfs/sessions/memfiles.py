"""Files users write into ``sessions/``: specs and editor side files, kept in memory for
the life of the mount, with their launch outcome (``.ids``/``.error``).

A file is *dirty* from a write or truncate until a launch attempt reads it; a handle that
wrote launches a dirty spec when it is closed (flush), so one write launches once and a
close without new content launches nothing.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from canfarfs import errors
from canfarfs.sessions.specs import is_scratch_name, is_spec_name

#: Largest file kept (specs above 64 KiB are kept so their .error can say why).
MAX_FILE = 1024 * 1024
#: All files together.
MAX_TOTAL = 64 * 1024 * 1024
MAX_FILES = 1000


class FileTooLarge(errors.CanfarfsError):
    errno = errno.EFBIG


class NoSpace(errors.CanfarfsError):
    errno = errno.ENOSPC


@dataclass(eq=False)
class MemFile:
    """One file's bytes and, for a spec, the outcome of its last launch."""

    name: str | None
    data: bytearray = field(default_factory=bytearray)
    mtime_ns: int = field(default_factory=time.time_ns)
    dirty: bool = True
    ids: list[str] = field(default_factory=list)
    error: str | None = None
    #: The errno of a launch that started nothing: reading ``.ids`` then fails with it,
    #: since ``printf … > spec`` (a shell built-in) never reports close()'s error.
    failed_errno: int | None = None
    lock: trio.Lock = field(default_factory=trio.Lock)

    @property
    def is_spec(self) -> bool:
        return self.name is not None and is_spec_name(self.name)

    def touch(self) -> None:
        self.mtime_ns = time.time_ns()


Launcher = Callable[[MemFile], Awaitable[None]]


class MemFiles:
    """The in-memory files of the ``sessions/`` root, by name, with size limits."""

    def __init__(self, launch: Launcher) -> None:
        self.files: dict[str, MemFile] = {}
        self.launch = launch

    @staticmethod
    def acceptable(name: str) -> bool:
        """Names that may be created: specs and editor side files."""
        return "/" not in name and (is_spec_name(name) or is_scratch_name(name))

    def total(self) -> int:
        return sum(len(f.data) for f in self.files.values())

    def create(self, name: str, exclusive: bool) -> MemFile:
        existing = self.files.get(name)
        if existing is not None:
            if exclusive:
                raise errors.AlreadyExists(name)
            self.resize(existing, 0)
            return existing
        if len(self.files) >= MAX_FILES:
            raise NoSpace(f"{name}: sessions/ holds at most {MAX_FILES} files")
        f = self.files[name] = MemFile(name)
        return f

    def remove(self, name: str) -> MemFile:
        f = self.files.pop(name)
        f.name = None
        return f

    def rename(self, src: str, dst: str) -> MemFile:
        f = self.files.pop(src)
        old = self.files.pop(dst, None)
        if old is not None:
            old.name = None
        f.name = dst
        self.files[dst] = f
        return f

    def resize(self, f: MemFile, size: int) -> None:
        self._check(len(f.data), size)
        if size < len(f.data):
            del f.data[size:]
        else:
            f.data.extend(bytes(size - len(f.data)))
        f.dirty = True
        f.touch()

    def write(self, f: MemFile, offset: int, data: bytes) -> int:
        end = offset + len(data)
        self._check(len(f.data), max(end, len(f.data)))
        if offset > len(f.data):
            f.data.extend(bytes(offset - len(f.data)))
        f.data[offset:end] = data
        f.dirty = True
        f.touch()
        return len(data)

    def _check(self, old: int, new: int) -> None:
        if new > MAX_FILE:
            raise FileTooLarge(f"files in sessions/ are at most {MAX_FILE} bytes")
        if new > old and self.total() + new - old > MAX_TOTAL:
            raise NoSpace(f"the files in sessions/ may hold at most {MAX_TOTAL} bytes")


class MemHandle:
    """An open spec or side file. Closing a handle that wrote launches a dirty spec;
    closing it again repeats that launch's error without launching again."""

    direct_io = True

    def __init__(
        self, files: MemFiles, f: MemFile, *, writable: bool, append: bool, wrote: bool = False
    ) -> None:
        self.files = files
        self.file = f
        self.writable = writable
        self.append = append
        self.wrote = wrote
        self.outcome: errors.CanfarfsError | None = None

    async def read(self, offset: int, size: int) -> bytes:
        return bytes(self.file.data[offset : offset + size])

    async def write(self, offset: int, data: bytes) -> int:
        if not self.writable:
            raise errors.CanfarfsError("not open for writing")
        if self.append:
            offset = len(self.file.data)
        n = self.files.write(self.file, offset, data)
        self.wrote = True
        return n

    async def truncate(self, size: int) -> None:
        self.files.resize(self.file, size)
        self.wrote = True

    async def flush(self) -> None:
        f = self.file
        if not self.wrote or not f.is_spec:
            return
        if f.dirty:
            self.outcome = None
            try:
                await self.files.launch(f)
            except errors.CanfarfsError as exc:
                self.outcome = exc
                raise
        elif self.outcome is not None:
            raise self.outcome

    async def fsync(self) -> None:
        """fsync(): as a close (nothing here is uploaded)."""
        await self.flush()

    async def release(self) -> None:
        return None
