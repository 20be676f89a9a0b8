"""Against the real CANFAR platform: opt-in, never run by CI.

Run with real credentials:

    CANFARFS_REAL_TOKEN_FILE=~/.canfar-token CANFARFS_USER=<you> pytest -m real

Optional: CANFARFS_REAL_ARC_URL, CANFARFS_REAL_VAULT_URL (production defaults).
The tests work in a scratch directory `canfarfs-test-<pid>` in your arc and vault homes
and remove it afterwards.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount_util import Mount, needs_fuse, start_mount

pytestmark = [pytest.mark.real, needs_fuse]

ARC = os.environ.get("CANFARFS_REAL_ARC_URL", "https://ws-uv.canfar.net/arc")
VAULT = os.environ.get("CANFARFS_REAL_VAULT_URL", "https://cadc-west-01.canfar.net/vault")


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    token = os.environ.get("CANFARFS_REAL_TOKEN_FILE")
    user = os.environ.get("CANFARFS_USER")
    if not token or not user:
        pytest.fail("real-platform tests need CANFARFS_REAL_TOKEN_FILE and CANFARFS_USER")
    base = tmp_path_factory.mktemp("real")
    m = start_mount(
        base / "mnt",
        [
            "--arc-url",
            ARC,
            "--vault-url",
            VAULT,
            "--token-file",
            os.path.expanduser(token),
            "--cache-dir",
            str(base / "cache"),
        ],
        timeout=60,
    )
    yield m
    m.unmount()


@pytest.mark.parametrize("service", ["arc", "vault"])
def test_write_list_read_delete(mount: Mount, service: str) -> None:
    user = os.environ["CANFARFS_USER"]
    home = mount.path / ("arc/home/" + user if service == "arc" else "vault/" + user)
    scratch = home / f"canfarfs-test-{os.getpid()}"
    scratch.mkdir()
    try:
        data = os.urandom(1_000_000)
        (scratch / "x.bin").write_bytes(data)
        assert "x.bin" in os.listdir(scratch)
        assert (scratch / "x.bin").read_bytes() == data
        assert os.stat(scratch / "x.bin").st_size == len(data)
    finally:
        shutil.rmtree(scratch)
    assert not Path(scratch).exists()
