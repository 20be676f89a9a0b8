"""The channel between the CLI and the daemon: a hidden file at the mount root.

``MOUNTPOINT/.canfarfs-control`` is not listed by ``ls``. Reading it gives the daemon's
status as JSON (a snapshot taken at open); writing ``sync`` to it and closing uploads
every pending file, and close() fails (EIO) if any upload still fails. Warm-up, pin and
evict commands (one per line, see fs/warmup.py's ``control_command``) start jobs of the
storage core, which the status document then shows (``warmups``, ``pinned``). Only the
mounting user can open it: FUSE keeps other users out unless ``-o allow_other``, and
then the adapter checks the caller's uid itself.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from canfarfs import errors
from canfarfs.fs.storage import Storage
from canfarfs.fs.warmup import COMMANDS, control_command

CONTROL_NAME = ".canfarfs-control"
#: Commands are short words, or a warm-up's paths (one per line).
MAX_COMMAND = 1024 * 1024


def status_document(
    storage: Storage,
    *,
    mountpoint: str,
    started: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything ``canfarfs status`` shows; no secrets (URLs, states and counts only)."""
    doc: dict[str, Any] = {
        "mountpoint": mountpoint,
        "pid": os.getpid(),
        "uptime": round(time.monotonic() - started, 1),
        **storage.status(),
    }
    if extra:
        doc.update(extra)
    return doc


@dataclass
class ControlHandle:
    """An open of the control file: a status snapshot to read, a command to write."""

    storage: Storage
    snapshot: bytes
    direct_io: bool = True
    command: bytearray = field(default_factory=bytearray)

    async def read(self, offset: int, size: int) -> bytes:
        return self.snapshot[offset : offset + size]

    async def write(self, offset: int, data: bytes) -> int:
        if offset + len(data) > MAX_COMMAND:
            raise errors.InvalidArgument(f"control commands take at most {MAX_COMMAND} bytes")
        self.command[offset : offset + len(data)] = data
        return len(data)

    async def truncate(self, size: int) -> None:
        del self.command[size:]

    async def flush(self) -> None:
        word = self.command.decode(errors="replace").strip()
        self.command.clear()
        if not word:
            return
        if word.split(None, 1)[0] in COMMANDS:  # warm-up, pin, evict (fs/warmup.py)
            await control_command(self.storage, [w for w in word.splitlines() if w.strip()])
            return
        if word != "sync":
            raise errors.InvalidArgument(f"unknown control command {word!r} (try: sync)")
        failures = await self.storage.sync()
        if failures:
            raise errors.Unavailable("; ".join(failures))

    async def fsync(self) -> None:
        """fsync(): as a close (nothing here is uploaded)."""
        await self.flush()

    async def release(self) -> None:
        return None


def render(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
