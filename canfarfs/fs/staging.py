"""Writes are staged in a local file and uploaded at flush/fsync.

Each staged file carries a journal entry (service, path, state) in an extended attribute
(``user.canfarfs.journal``; one ``setxattr``, atomic, where a JSON file beside it cost a
create, a write and a rename per file), or in ``<id>.json`` beside it where the cache's
file system keeps no extended attributes. Bytes that were not yet on the server when
the daemon died are found on the next mount (uploaded, or reported with where they are
kept). An MD5 is kept up to date while the
file is written sequentially, so a large upload does not re-read the file to hash it;
given a nursery, the hashing runs in a worker thread beside the writes (MD5 costs about
1.7 ms per MiB, more than the write itself), in order, with a bounded backlog.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from canfarfs import errors
from canfarfs.fs.cachefile import DISK
from canfarfs.fs.upstream import UploadStream
from canfarfs.tasks import spawn

#: The extended attribute holding a staged file's journal entry.
JOURNAL_XATTR = "user.canfarfs.journal"
#: Errnos of a file system that keeps no (user) extended attributes.
NO_XATTRS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM})
#: Staging directories known to exist, and those whose file system keeps no xattrs.
_made: set[Path] = set()
_without_xattrs: set[Path] = set()
#: Bytes written but not yet hashed before a write waits for the hashing thread.
HASH_BACKLOG = 32 * 1024 * 1024
#: Pieces up to this size are hashed inline (about 8 µs for 4 KiB).
HASH_INLINE = 64 * 1024
#: Piece size when a staged copy starts from the server's bytes.
FILL_PIECE = 1024 * 1024


@dataclass
class Stage:
    """One file's pending content."""

    directory: Path
    service: str
    path: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    size: int = 0
    dirty: bool = False
    #: The file did not exist on the server when staging began.
    new: bool = False
    #: Set when the file was unlinked while open: nothing is uploaded.
    discarded: bool = False
    handles: int = 0
    tries: int = 0
    last_error: str | None = None
    uploading: bool = False
    uploaded_bytes: int = 0
    #: Bumped by every change, so an upload knows whether writes raced it.
    generation: int = 0
    lock: trio.Lock = field(default_factory=trio.Lock, repr=False)
    #: The upload streaming while the file is written (new arc files; see upstream.py).
    stream: UploadStream | None = field(default=None, repr=False)
    #: A stream was started once; after it is given up, the file is staged only.
    streamed: bool = False
    #: Property changes (chmod, setfattr) made before the file first reached the server,
    #: applied right after its upload.
    pending_props: dict[str, str | None] = field(default_factory=dict)
    #: Where background hashing runs; None hashes inline.
    nursery: trio.Nursery | None = field(default=None, repr=False)
    _md5: Any = field(default_factory=hashlib.md5, repr=False)
    _md5_upto: int = 0
    _unhashed: list[bytes] = field(default_factory=list, repr=False)
    _unhashed_bytes: int = 0
    _hashed: trio.Event | None = field(default=None, repr=False)
    #: While set, writes and truncates wait (an upload that raced writes is redone
    #: with them held back, so it sends one consistent copy).
    _gate: trio.Event | None = field(default=None, repr=False)
    _busy: int = 0
    _journal_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _idle: trio.Event = field(default_factory=trio.Event, repr=False)
    #: When the bytes last changed (the staged file's date until it is uploaded).
    mtime: float = field(default_factory=time.time)
    #: A date set with utimensat since the last change (ns), recorded on the server
    #: with the MD5 of the uploaded bytes once they are up.
    set_mtime_ns: int | None = None
    #: A mode a copy set before the file first reached the server: applied (with what
    #: the server's inheritance gives it) right after the upload (Storage._copy_mode).
    copy_mode: int | None = None
    #: The MD5 of the bytes last uploaded.
    uploaded_md5: str | None = None
    #: The MD5 of the server's copy this one started from (None for a new file): a
    #: write-back upload finding another there sets ours aside (Storage._set_aside).
    base_md5: str | None = None
    fd: int = -1

    def __post_init__(self) -> None:
        if self.directory not in _made:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            _made.add(self.directory)
        try:
            self.fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:  # the directory was removed since
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT, 0o600)

    @property
    def data_path(self) -> Path:
        return self.directory / f"{self.id}.data"

    @property
    def journal_path(self) -> Path:
        """The journal entry's file where the file system keeps no xattrs."""
        return self.directory / f"{self.id}.json"

    def journal(self) -> None:
        """Record (atomically) where these bytes belong. Called inline and from worker
        threads: one at a time per staged file, so an older entry never replaces a
        newer one and none reappears after :meth:`uploaded` removed it."""
        with self._journal_lock:
            if not self.dirty:
                return
            entry = json.dumps(
                {
                    "service": self.service,
                    "path": self.path,
                    "size": self.size,
                    "dirty": self.dirty,
                    "new": self.new,
                    "base_md5": self.base_md5,
                    "time": time.time(),
                    "last_error": self.last_error,
                }
            ).encode()
            if self.directory not in _without_xattrs:
                try:  # by path: the descriptor may be closed by another thread meanwhile
                    os.setxattr(self.data_path, JOURNAL_XATTR, entry)
                    return
                except OSError as exc:
                    if exc.errno not in NO_XATTRS:
                        raise
                    _without_xattrs.add(self.directory)
            tmp = self.journal_path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(entry)
            os.replace(tmp, self.journal_path)

    def _unjournal(self) -> None:
        """Remove the journal entry (the bytes are on the server, or not wanted)."""
        if self.directory not in _without_xattrs:
            with contextlib.suppress(OSError):  # no entry, no file, no xattrs
                os.removexattr(self.data_path, JOURNAL_XATTR)
        self.journal_path.unlink(missing_ok=True)  # also one an earlier version wrote

    @contextlib.asynccontextmanager
    async def writes_held(self) -> AsyncIterator[None]:
        """Hold back writes and truncates for the duration of the block (after the ones
        already under way have finished)."""
        self._gate = gate = trio.Event()
        try:
            while self._busy:
                await self._idle.wait()
            yield
        finally:
            self._gate = None
            gate.set()

    @contextlib.asynccontextmanager
    async def _changing(self) -> AsyncIterator[None]:
        """One write or truncate: waits at the gate, then counts as under way."""
        while self._gate is not None:
            await self._gate.wait()
        if self.fd < 0:
            raise errors.Stale(f"staged copy of {self.service}:{self.path} was dropped")
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()
                self._idle = trio.Event()

    async def write(self, offset: int, data: bytes) -> int:
        """Write into the staging file. Inline, as s3ql writes its cache: a write of at
        most 1 MiB lands in the page cache, and a thread hop per FUSE write cost more
        than the copy (docs/performance.md)."""
        async with self._changing():
            return await self._write(offset, data)

    async def _write(self, offset: int, data: bytes) -> int:
        try:
            n = os.pwrite(self.fd, data, offset)
        except (OSError, OverflowError) as exc:
            raise errors.local_disk_error(exc, f"write {self.service}:{self.path}") from exc
        self.mtime = time.time()
        self.set_mtime_ns = None
        if offset == self._md5_upto:
            self._hash_later(data if n == len(data) else data[:n])
            self._md5_upto += n
            if self._unhashed_bytes > HASH_BACKLOG:
                await self._hashing_done()
        elif offset < self._md5_upto:
            self._md5_upto = -1  # rewritten: hash again at upload
        self.size = max(self.size, offset + n)
        self.generation += 1
        if not self.dirty:
            self.dirty = True
            await trio.to_thread.run_sync(self.journal, limiter=DISK)
        return n

    def _hash_later(self, piece: bytes) -> None:
        """Queue ``piece`` (the next bytes in order) for the hashing thread; a small
        piece with nothing queued before it is hashed here (a thread hop costs more)."""
        if self.nursery is None or (self._hashed is None and len(piece) <= HASH_INLINE):
            self._md5.update(piece)
            return
        self._unhashed.append(piece)
        self._unhashed_bytes += len(piece)
        if self._hashed is None:
            self._hashed = trio.Event()
            spawn(
                self.nursery,
                self._hash_backlog,
                on_error=self._hash_failed,
                what=f"hashing {self.service}:{self.path}",
            )

    async def _hash_backlog(self) -> None:
        def update(md5: Any, pieces: list[bytes]) -> None:
            for piece in pieces:
                md5.update(piece)

        try:
            while self._unhashed:
                pieces, self._unhashed, self._unhashed_bytes = self._unhashed, [], 0
                await trio.to_thread.run_sync(update, self._md5, pieces)
        finally:
            done, self._hashed = self._hashed, None
            if done is not None:
                done.set()

    def _hash_failed(self, exc: BaseException) -> None:
        """The running MD5 is incomplete: hash the staged file again at upload."""
        self._md5_upto = -1
        self._unhashed, self._unhashed_bytes = [], 0

    async def _hashing_done(self) -> None:
        """Wait until every queued piece is in the running MD5."""
        while self._hashed is not None:
            await self._hashed.wait()

    async def read(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.size - offset))
        if size == 0:
            return b""
        if self.fd < 0:
            raise errors.Stale(f"staged copy of {self.service}:{self.path} was dropped")
        return os.pread(self.fd, size, offset)

    @property
    def in_order(self) -> bool:
        """Every byte so far was written in order from offset 0 (and is being hashed)."""
        return self._md5_upto == self.size

    def end_stream(self, why: str) -> None:
        """Give up the streaming upload, if any; the staged copy is uploaded at flush."""
        if self.stream is not None:
            self.stream.abort(why)
            self.stream = None

    async def truncate(self, size: int) -> None:
        """Cut or extend the staged file. Inline, like writes: a truncate and a write
        never interleave, so the staged size and the running MD5 always describe the
        file's bytes."""
        if size < 0:
            raise errors.InvalidArgument(f"negative size {size}")
        async with self._changing():
            try:
                os.ftruncate(self.fd, size)
            except (OSError, OverflowError) as exc:
                raise errors.local_disk_error(
                    exc, f"truncate {self.service}:{self.path} to {size}"
                ) from exc
            self.end_stream("truncated")
            self.mtime = time.time()
            self.set_mtime_ns = None
            if size == 0:
                self._restart_hash()
            elif size != self._md5_upto:
                self._md5_upto = -1  # hash again at upload
            self.size = size
            self.generation += 1
            self.dirty = True
            await trio.to_thread.run_sync(self.journal, limiter=DISK)

    def _restart_hash(self) -> None:
        """Empty file: a fresh running MD5 (pieces queued for the old one are dropped)."""
        self._md5 = hashlib.md5()  # noqa: S324 - protocol checksum
        self._md5_upto = 0
        self._unhashed, self._unhashed_bytes = [], 0

    async def fill_from(
        self, read: Callable[[int, int], Awaitable[bytes | memoryview]], size: int
    ) -> None:
        """Start from existing content, read a piece at a time (the server's bytes);
        called again, it starts over."""
        await self._hashing_done()
        self._restart_hash()
        offset = 0
        while offset < size:
            chunk = await read(offset, min(FILL_PIECE, size - offset))
            if not chunk:
                raise errors.ProtocolError(
                    f"{self.service}:{self.path}: server copy ended at {offset} of {size}"
                )

            def put(chunk: bytes | memoryview = chunk, at: int = offset) -> None:
                os.pwrite(self.fd, chunk, at)
                self._md5.update(chunk)

            try:
                await trio.to_thread.run_sync(put, limiter=DISK)
            except (OSError, OverflowError) as exc:
                raise errors.local_disk_error(exc, f"stage {self.service}:{self.path}") from exc
            offset += len(chunk)
        try:
            os.ftruncate(self.fd, size)
        except OSError as exc:
            raise errors.local_disk_error(exc, f"stage {self.service}:{self.path}") from exc
        self.size = size
        self._md5_upto = size

    async def md5(self) -> str:
        """The MD5 of the staged bytes (hashing again only if written out of order)."""
        await self._hashing_done()
        if self._md5_upto == self.size:
            return str(self._md5.hexdigest())

        size = self.size

        def rehash() -> str:
            h = hashlib.md5()  # noqa: S324 - protocol checksum
            offset = 0
            with self.data_path.open("rb") as f:
                while offset < size:  # exactly the bytes an upload sends (client.upload)
                    want = min(1024 * 1024, size - offset)
                    chunk = f.read(want) or bytes(want)
                    h.update(chunk)
                    offset += len(chunk)
            return h.hexdigest()

        digest: str = await trio.to_thread.run_sync(rehash, limiter=DISK)
        return digest

    def uploaded(self) -> None:
        """The server now holds these bytes: nothing to recover any more."""
        with self._journal_lock:
            self.dirty = False
            self.last_error = None
            self._unjournal()

    def dispose(self) -> None:
        """Close the staging file; remove it unless it holds bytes still to upload."""
        self.end_stream("staged file dropped")
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.dirty or self.discarded:
            self.data_path.unlink(missing_ok=True)
            self.journal_path.unlink(missing_ok=True)


def read_journal(data: Path) -> dict[str, Any] | None:
    """The journal entry of the staged file ``data`` (its xattr, else the JSON file an
    xattr-less file system or an earlier version kept beside it); None without one."""
    raw: bytes | None = None
    try:
        raw = os.getxattr(data, JOURNAL_XATTR)
    except OSError:
        with contextlib.suppress(OSError):
            raw = data.with_suffix(".json").read_bytes()
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def pending_entries(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Journal entries left by an earlier run whose bytes may not be on the server."""
    out: list[tuple[Path, dict[str, Any]]] = []
    if not directory.is_dir():
        return out
    for data in sorted(directory.glob("*.data")):
        entry = read_journal(data)
        if entry is not None and entry.get("dirty"):
            out.append((data, entry))
    return out
