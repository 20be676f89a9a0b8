"""A full local disk (docs/semantics.md, errno table: ENOSPC "the staging or cache disk is
full"): the cache directory on a 2 MiB tmpfs. A copy bigger than the disk fails with
ENOSPC and words, the mount goes on serving, the bytes a close acknowledged before are
on the server, and a later copy that fits succeeds — durable close and write-back."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.emulator_util import TOKEN, LiveEmulator, start_live_emulator
from tests.mount_util import (
    Mount,
    is_mounted,
    mount_args,
    needs_fuse,
    sh,
    start_mount,
    wait_until,
)

pytestmark = [
    needs_fuse,
    pytest.mark.fuse,
    pytest.mark.semantics("Writing and durability"),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root"),
]
HOME = "home/alice"
SYNC = f"{sys.executable} -m canfarfs sync"


@pytest.fixture
def small_cache(tmp_path: Path) -> Iterator[Path]:
    cache = tmp_path / "cache"
    cache.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(cache)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"a tmpfs cannot be mounted here: {r.stderr.strip()}")
    yield cache
    subprocess.run(["umount", "-l", str(cache)], check=False)


@pytest.fixture(params=[False, True], ids=["durable", "writeback"])
def mounted(
    request: pytest.FixtureRequest, tmp_path: Path, small_cache: Path
) -> Iterator[tuple[LiveEmulator, Mount]]:
    root = tmp_path / "emu"
    root.mkdir()
    live = start_live_emulator(root)
    # A long write-back delay: only the full disk can start the queue within the test.
    writeback = ["--writeback", "--writeback-delay", "600"] if request.param else []
    args = mount_args(live.url, tmp_path) + writeback
    m = start_mount(tmp_path / "mnt", args, env=dict(os.environ, CANFARFS_USER="alice"))
    yield live, m
    if is_mounted(m.path):
        m.unmount()
    live.stop()


def server_md5(live: LiveEmulator, name: str) -> str | None:
    r = httpx2.get(
        f"{live.url}/arc/files/{HOME}/{name}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    return hashlib.md5(r.content).hexdigest() if r.status_code == 200 else None  # noqa: S324


def test_a_copy_bigger_than_the_cache_disk_fails_with_enospc_and_the_mount_goes_on(
    mounted: tuple[LiveEmulator, Mount], tmp_path: Path
) -> None:
    live, m = mounted
    home = m.path / "arc" / HOME
    before = b"written before the disk filled\n"
    (tmp_path / "before.txt").write_bytes(before)
    assert sh(f"cp before.txt {home}/ && {SYNC} {m.path}", tmp_path).returncode == 0
    (tmp_path / "big.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    r = sh(f"cp big.bin {home}/big.bin", tmp_path)
    assert r.returncode != 0
    assert "No space left on device" in r.stderr
    # The mount goes on: it lists, reads, and takes a copy that fits.
    assert "before.txt" in os.listdir(home)
    assert (home / "before.txt").read_bytes() == before
    after = os.urandom(100_000)
    (tmp_path / "after.bin").write_bytes(after)
    # With write-back the failed copy's bytes are queued, and fill the disk until they
    # are up: a full disk starts the queue at once, so the copy fits again shortly.
    wait_until(lambda: sh(f"cp after.bin {home}/", tmp_path).returncode == 0, timeout=20)
    assert sh(f"{SYNC} {m.path}", tmp_path).returncode == 0
    assert server_md5(live, "before.txt") == hashlib.md5(before).hexdigest()  # noqa: S324
    assert server_md5(live, "after.bin") == hashlib.md5(after).hexdigest()  # noqa: S324
