#!/usr/bin/env python3
"""The floor for any Python FUSE file system here: a pyfuse3 passthrough of a local dir.

Issue 6 says: where a goal cannot be met because of FUSE in Python on this machine, show
the measured floor, a pyfuse3 passthrough doing the same workload. This is that file
system, built like pyfuse3's own ``examples/passthroughfs.py`` and mounted the way
canfarfs mounts (the same pyfuse3 default options plus ``default_permissions``, the same
task pool, 1 MiB kernel read-ahead, the same entry/attribute TTL, page cache kept). It
does no network work and no hashing, so whatever canfarfs spends beyond it is canfarfs's.

    python benchmarks/passthrough_fs.py SOURCE MOUNTPOINT     # foreground; ^C unmounts

Only what the benchmark's workloads use is implemented (lookup, getattr, setattr with
size, readdir, open/create/read/write/flush/release, mkdir, unlink, rmdir, statfs); the
security xattrs ``ls`` and ``cp`` ask for are answered ENODATA, as canfarfs answers them.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pyfuse3
import trio

TTL = 5.0  # canfarfs's default --meta-ttl
READAHEAD_KB = 1024


class Passthrough(pyfuse3.Operations):  # type: ignore[misc]
    """Inodes are the source's own; a path table maps them back to names."""

    enable_writeback_cache = False

    def __init__(self, source: str) -> None:
        super().__init__()
        self.paths: dict[int, str] = {pyfuse3.ROOT_INODE: source}
        self.lookups: dict[int, int] = {}
        self.fds: dict[int, int] = {}

    def _path(self, inode: int) -> str:
        try:
            return self.paths[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    def _remember(self, path: str) -> int:
        st = os.lstat(path)
        self.paths[st.st_ino] = path
        self.lookups[st.st_ino] = self.lookups.get(st.st_ino, 0) + 1
        return st.st_ino

    def _entry(self, path: str) -> pyfuse3.EntryAttributes:
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno) from None
        e = pyfuse3.EntryAttributes()
        for name in (
            "st_ino",
            "st_mode",
            "st_nlink",
            "st_uid",
            "st_gid",
            "st_rdev",
            "st_size",
            "st_atime_ns",
            "st_mtime_ns",
            "st_ctime_ns",
        ):
            setattr(e, name, getattr(st, name))
        e.st_blksize, e.st_blocks = 512, -(-st.st_size // 512)
        e.generation = 0
        e.entry_timeout = e.attr_timeout = TTL
        return e

    async def lookup(self, parent: int, name: bytes, ctx: Any = None) -> Any:
        path = os.path.join(self._path(parent), os.fsdecode(name))
        e = self._entry(path)
        self._remember(path)
        return e

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for inode, n in inode_list:
            left = self.lookups.get(inode, 0) - n
            if left > 0:
                self.lookups[inode] = left
            else:
                self.lookups.pop(inode, None)
                if inode != pyfuse3.ROOT_INODE:
                    self.paths.pop(inode, None)

    async def getattr(self, inode: int, ctx: Any = None) -> Any:
        return self._entry(self._path(inode))

    async def setattr(self, inode: int, attr: Any, fields: Any, fh: Any, ctx: Any) -> Any:
        path = self._path(inode)
        if fields.update_size:
            os.truncate(path, attr.st_size)
        if fields.update_mode:
            os.chmod(path, stat.S_IMODE(attr.st_mode))
        return self._entry(path)

    async def opendir(self, inode: int, ctx: Any) -> int:
        return inode

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        path = self._path(fh)
        entries = sorted((e.inode(), e.name) for e in os.scandir(path))
        for ino, name in entries:
            if ino <= start_id:
                continue
            full = os.path.join(path, name)
            if not pyfuse3.readdir_reply(token, os.fsencode(name), self._entry(full), ino):
                break
            self._remember(full)

    async def releasedir(self, fh: int) -> None:
        return None

    async def statfs(self, ctx: Any) -> Any:
        st = os.statvfs(self.paths[pyfuse3.ROOT_INODE])
        s = pyfuse3.StatvfsData()
        for name in (
            "f_bsize",
            "f_frsize",
            "f_blocks",
            "f_bfree",
            "f_bavail",
            "f_files",
            "f_ffree",
            "f_favail",
        ):
            setattr(s, name, getattr(st, name))
        s.f_namemax = st.f_namemax
        return s

    async def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        raise pyfuse3.FUSEError(errno.ENODATA)

    async def open(self, inode: int, flags: int, ctx: Any) -> Any:
        fd = os.open(self._path(inode), flags & ~os.O_CREAT)
        self.fds[fd] = fd
        return pyfuse3.FileInfo(fh=fd, keep_cache=True)

    async def create(self, parent: int, name: bytes, mode: int, flags: int, ctx: Any) -> Any:
        path = os.path.join(self._path(parent), os.fsdecode(name))
        fd = os.open(path, flags | os.O_CREAT | os.O_TRUNC, mode)
        self._remember(path)
        self.fds[fd] = fd
        return pyfuse3.FileInfo(fh=fd), self._entry(path)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return os.pread(fh, size, off)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return os.pwrite(fh, buf, off)

    async def flush(self, fh: int) -> None:
        return None

    async def release(self, fh: int) -> None:
        self.fds.pop(fh, None)
        os.close(fh)

    async def mkdir(self, parent: int, name: bytes, mode: int, ctx: Any) -> Any:
        path = os.path.join(self._path(parent), os.fsdecode(name))
        os.mkdir(path, mode)
        self._remember(path)
        return self._entry(path)

    async def unlink(self, parent: int, name: bytes, ctx: Any) -> None:
        os.unlink(os.path.join(self._path(parent), os.fsdecode(name)))

    async def rmdir(self, parent: int, name: bytes, ctx: Any) -> None:
        os.rmdir(os.path.join(self._path(parent), os.fsdecode(name)))


def tune_readahead(target: str) -> None:
    """1 MiB read-ahead, as canfarfs sets it (root only; skipped otherwise)."""
    try:
        with open("/proc/self/mountinfo") as f:
            dev = next((ln.split()[2] for ln in f if ln.split()[4] == target), None)
        if dev is not None:
            Path(f"/sys/class/bdi/{dev}/read_ahead_kb").write_text(f"{READAHEAD_KB}\n")
    except OSError:
        pass


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: passthrough_fs.py SOURCE MOUNTPOINT", file=sys.stderr)
        return 2
    source, target = os.path.realpath(argv[0]), os.path.realpath(argv[1])
    options = set(pyfuse3.default_options) | {"default_permissions", "fsname=passthrough"}
    pyfuse3.init(Passthrough(source), target, options)

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, tune_readahead, target)
            await pyfuse3.main(min_tasks=4, max_tasks=64)

    try:
        trio.run(serve)
    except KeyboardInterrupt:
        pass
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
