"""The mount and CADC's own `vos` tools agree: the same server, seen both ways.

A mount points at a separately started emulator (``--arc-url``/``--vault-url`` with
``--token-file``), and vcp/vmv/vls run against the same emulator.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulator_util import LiveEmulator
from tests.mount_util import Mount, needs_fuse, start_mount
from tests.vos_util import SERVICES, VosRig, vos_rig

pytestmark = [needs_fuse, pytest.mark.fuse]
META_TTL = 1.0


@pytest.fixture(params=sorted(SERVICES))
def rig(request: pytest.FixtureRequest, live: LiveEmulator, tmp_path: Path) -> Iterator[VosRig]:
    """The vos CLI pointed at an emulator (tests/vos_util.py), for each service."""
    with vos_rig(SERVICES[request.param], live, tmp_path) as r:
        yield r


@pytest.fixture
def mounted(rig: VosRig, tmp_path: Path) -> Iterator[tuple[VosRig, Path]]:
    token_file = tmp_path / "token"
    token_file.write_text(rig.live.token + "\n")
    os.chmod(token_file, 0o600)
    url = rig.live.url
    env = dict(os.environ, CANFARFS_USER="alice")
    m: Mount = start_mount(
        tmp_path / "mnt",
        [
            "--arc-url",
            f"{url}/arc",
            "--vault-url",
            f"{url}/vault",
            "--token-file",
            str(token_file),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--meta-ttl",
            str(META_TTL),
        ],
        env=env,
    )
    service = rig.service
    home = m.path / service.name / service.home
    yield rig, home
    m.unmount()
    assert m.proc.returncode == 0, m.log_text()


def wait_until(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_file_written_through_the_mount_reads_back_identical_with_vcp(
    mounted: tuple[VosRig, Path], tmp_path: Path
) -> None:
    rig, home = mounted
    data = os.urandom(2_500_000)
    (home / "from-mount.bin").write_bytes(data)
    out = tmp_path / "got.bin"
    rig.vos("vcp", rig.remote("from-mount.bin"), str(out))
    assert out.read_bytes() == data


def test_file_written_with_vcp_appears_in_the_mount(
    mounted: tuple[VosRig, Path], tmp_path: Path
) -> None:
    rig, home = mounted
    assert not (home / "from-vcp.txt").exists()
    src = tmp_path / "src.txt"
    src.write_text("written by vcp\n")
    rig.vos("vcp", str(src), rig.remote("from-vcp.txt"))
    assert wait_until(lambda: (home / "from-vcp.txt").exists(), META_TTL + 3)
    assert (home / "from-vcp.txt").read_text() == "written by vcp\n"


def test_a_rename_with_vmv_shows_up(mounted: tuple[VosRig, Path]) -> None:
    rig, home = mounted
    (home / "before.txt").write_text("moving")
    assert (home / "before.txt").exists()
    rig.vos("vmv", rig.remote("before.txt"), rig.remote("after.txt"))
    assert wait_until(
        lambda: (home / "after.txt").exists() and not (home / "before.txt").exists(), META_TTL + 3
    )
    assert (home / "after.txt").read_text() == "moving"


def test_vls_l_agrees_with_ls_l(mounted: tuple[VosRig, Path]) -> None:
    rig, home = mounted
    (home / "d").mkdir()
    (home / "a.txt").write_text("aaaa")
    (home / "b.bin").write_bytes(b"b" * 1000)
    os.chmod(home / "a.txt", 0o604)
    vls = rig.vos("vls", "-l", rig.remote()).stdout
    ls = subprocess.run(["ls", "-l", str(home)], capture_output=True, text=True, check=True).stdout

    def rows(text: str) -> dict[str, tuple[str, str]]:
        out = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 5 and re.match(r"^[-dl][-rwx]{9}$", parts[0]):
                size = parts[-5] if line.startswith(("-", "d", "l")) else ""
                out[parts[-1]] = (parts[0], size)
        return out

    mine, theirs = rows(ls), rows(vls)
    assert set(mine) == set(theirs)
    for name in ("a.txt", "b.bin"):
        assert mine[name] == theirs[name], (name, mine[name], theirs[name])
    assert mine["d"][0][0] == theirs["d"][0][0] == "d"
