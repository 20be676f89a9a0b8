"""Modes through the mount (docs/semantics.md, *Permissions*): copies (`cp -a`,
`rsync -a`, `tar -x`) exit 0 and never publish anything, their modes recorded and shown;
`chmod o+r` still publishes and group bits still map onto VOSpace groups; with
`--strict-modes`, what VOSpace cannot express is refused instead."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount_util import Mount, local_mount, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse, pytest.mark.semantics("Permissions")]
HOME = {"arc": "arc/home/alice", "vault": "vault/alice"}


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    yield from local_mount(tmp_path_factory.mktemp("modes"), "--meta-ttl", "1")


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    yield from local_mount(tmp_path_factory.mktemp("strict"), "--strict-modes")


@pytest.fixture(params=["arc", "vault"])
def home(request: pytest.FixtureRequest, mount: Mount) -> Path:
    d = mount.path / HOME[request.param] / f"m-{request.node.name[:28]}"
    d.mkdir()
    return d


def sh(cmd: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def world_readable_tree(root: Path) -> Path:
    """What a laptop holds: 0644 files, 0755 directories and scripts."""
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a\n")
    (src / "sub" / "b.fits").write_bytes(b"SIMPLE  =" + bytes(2871))
    (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
    sh(
        "chmod 644 a.txt sub/b.fits && chmod 755 run.sh sub . && "
        "touch -d 2001-01-01T00:00:00Z a.txt",
        src,
    )
    return src


def public(path: Path) -> bool:
    return os.getxattr(path, "user.ispublic") == b"true"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_rsync_a_exits_0_publishes_nothing_and_the_second_run_has_nothing_to_do(
    home: Path, tmp_path: Path
) -> None:
    src = world_readable_tree(tmp_path)
    r = sh(f"rsync -a {src}/ copy/", home)
    assert r.returncode == 0, r.stderr
    for rel in ("a.txt", "sub/b.fits", "run.sh", "sub"):
        assert not public(home / "copy" / rel), rel
    assert mode(home / "copy" / "a.txt") == 0o644
    assert mode(home / "copy" / "run.sh") == 0o755
    assert mode(home / "copy" / "sub") == 0o755
    again = sh(f"rsync -a --itemize-changes {src}/ copy/", home)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""


def test_cp_a_and_tar_x_exit_0_and_publish_nothing(home: Path, tmp_path: Path) -> None:
    src = world_readable_tree(tmp_path)
    r = sh(f"cp -a {src} cpa", home)
    assert r.returncode == 0, r.stderr
    assert mode(home / "cpa" / "a.txt") == 0o644
    assert not public(home / "cpa" / "a.txt")
    r = sh(
        f"tar -C {src} -cf {tmp_path}/t.tar . && mkdir untar && tar -xf {tmp_path}/t.tar -C untar",
        home,
    )  # as root: tar sets modes too
    assert r.returncode == 0, r.stderr
    assert mode(home / "untar" / "run.sh") == 0o755
    assert not public(home / "untar" / "run.sh")
    assert not public(home / "untar" / "sub")
    assert (home / "untar" / "sub" / "b.fits").read_bytes().startswith(b"SIMPLE")


def test_chmod_o_plus_r_still_publishes_and_a_recorded_mode_gives_way(home: Path) -> None:
    f = home / "plain.txt"
    f.write_text("p")
    assert sh("chmod o+r plain.txt", home).returncode == 0
    assert public(f)
    assert mode(f) == 0o604
    assert sh("chmod o-r plain.txt", home).returncode == 0
    assert not public(f)
    assert sh("chmod 644 plain.txt", home).returncode == 0  # group and others: recorded
    assert not public(f)
    assert mode(f) == 0o644
    assert sh("setfattr -n user.ispublic -v true plain.txt", home).returncode == 0
    assert mode(f) == 0o604  # the access changed: the recorded mode no longer shows


def test_strict_modes_refuse_what_vospace_cannot_express(strict: Mount, tmp_path: Path) -> None:
    src = world_readable_tree(tmp_path)
    home = strict.path / HOME["arc"]
    r = sh(f"rsync -a {src}/ strict-copy/", home)
    assert r.returncode == 23
    assert "failed to set permissions" in r.stderr
    assert (home / "strict-copy" / "a.txt").read_text() == "a\n"
    assert not public(home / "strict-copy" / "a.txt")


def test_a_copy_into_a_group_shared_directory_publishes_nothing(home: Path, tmp_path: Path) -> None:
    """There 0644 asks only for what VOSpace could grant (the group reads already):
    a copy still gets no public access, and the second run has nothing to do."""
    shared = home / "shared"
    shared.mkdir()
    assert (
        sh(
            "setfattr -n user.groupread -v survey-team shared && "
            "setfattr -n user.inheritPermissions -v true shared",
            home,
        ).returncode
        == 0
    )
    src = world_readable_tree(tmp_path)
    r = sh(f"rsync -a {src}/ shared/copy/", home)
    assert r.returncode == 0, r.stderr
    for rel in ("a.txt", "run.sh", "sub", "sub/b.fits"):
        assert not public(shared / "copy" / rel), rel
    assert os.getxattr(shared / "copy" / "a.txt", "user.groupread") == b"survey-team"
    assert mode(shared / "copy" / "a.txt") == 0o644
    again = sh(f"rsync -a --itemize-changes {src}/ shared/copy/", home)
    assert again.stdout == "", again.stdout
