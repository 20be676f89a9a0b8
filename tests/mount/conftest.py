"""tests/mount: real mounts (/dev/fuse and fusermount3; skipped without them) of the
emulator on a socket or of a local directory. Helpers are in tests/mount_util.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulator_util import start_live_emulator
from tests.mount_util import Rig, mount_args, start_mount


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """An emulator on a socket (faults injectable over HTTP) and a mount of it."""
    root = tmp_path / "emu"
    root.mkdir()
    live = start_live_emulator(root)
    args = mount_args(live.url, tmp_path)
    env = dict(os.environ, CANFARFS_USER="alice")
    m = start_mount(tmp_path / "mnt", args, env=env)
    r = Rig(live, m, tmp_path, args)
    yield r
    r.clear()
    r.mount.unmount()
    r.live.stop()
