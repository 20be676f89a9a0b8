"""Private by default: other users cannot enter the mount, the cache is private, and the
secrets used in a run appear in no log, status or process argument."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulator_util import TOKEN, LiveEmulator, start_live_emulator
from tests.mount_util import Mount, needs_fuse, start_mount

pytestmark = [needs_fuse, pytest.mark.fuse]
NOBODY = 65534


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[LiveEmulator, Mount]]:
    root = tmp_path / "emu"
    root.mkdir()
    live = start_live_emulator(root)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    os.chmod(tmp_path, 0o755)  # so that "nobody" could reach the mount point at all
    env = dict(os.environ, CANFARFS_USER="alice")
    m = start_mount(
        tmp_path / "mnt",
        [
            "--arc-url",
            f"{live.url}/arc",
            "--vault-url",
            f"{live.url}/vault",
            "--token-file",
            str(token),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--debug",
        ],
        env=env,
    )
    yield live, m
    m.unmount()
    live.stop()


def as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("setpriv") is None,
    reason="switching to another uid needs root and setpriv",
)
def test_other_users_cannot_enter_the_mount(rig: tuple[LiveEmulator, Mount]) -> None:
    _, m = rig
    (m.path / "arc/home/alice/secret.txt").write_text("mine")
    r = as_nobody("ls", str(m.path))
    assert r.returncode != 0
    assert "Permission denied" in r.stderr
    r = as_nobody("cat", str(m.path / "arc/home/alice/secret.txt"))
    assert r.returncode != 0
    assert "Permission denied" in r.stderr


def test_cache_and_staging_are_private(rig: tuple[LiveEmulator, Mount], tmp_path: Path) -> None:
    _, m = rig
    (m.path / "vault/alice/data.bin").write_bytes(b"x" * 10_000)
    assert (m.path / "vault/alice/data.bin").read_bytes() == b"x" * 10_000
    cache = tmp_path / "cache"
    for path in [cache, *cache.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, (path, oct(mode))
        elif path.suffix != ".sock":
            assert mode & 0o077 == 0, (path, oct(mode))


def test_the_token_appears_in_no_log_status_or_argument(
    rig: tuple[LiveEmulator, Mount],
) -> None:
    _, m = rig
    (m.path / "arc/home/alice/f.txt").write_text("data")
    (m.path / "arc/home/alice/f.txt").read_text()
    status = (m.path / ".canfarfs-control").read_text()
    assert TOKEN not in status
    assert TOKEN not in m.log_text()  # --debug: the most verbose log
    cmdline = Path(f"/proc/{m.proc.pid}/cmdline").read_bytes().decode(errors="replace")
    assert TOKEN not in cmdline
