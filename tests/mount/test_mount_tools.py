"""Everyday tools through the mount, on arc and vault (docs/semantics.md): the ways
they write — git's object files and lock-then-rename, SQLite's page writes and journal,
`sed -i`'s temporary file renamed over the original, vim's swap file and write-back —
all end with the right bytes on the server."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount_util import Mount, local_mount, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse, pytest.mark.semantics("Everyday tools")]
HOME = {"arc": "arc/home/alice", "vault": "vault/alice"}


def needs(tool: str) -> pytest.MarkDecorator:
    """Skipped on a machine without ``tool``, but never in CI: .ci/run installs it, and a
    missing one there must fail rather than hide the test."""
    return pytest.mark.skipif(
        shutil.which(tool) is None and not os.environ.get("CI"),
        reason=f"needs {tool} (.ci/run installs it)",
    )


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    yield from local_mount(tmp_path_factory.mktemp("tools"), "--meta-ttl", "1")


@pytest.fixture(params=["arc", "vault"])
def home(request: pytest.FixtureRequest, mount: Mount) -> Path:
    d = mount.path / HOME[request.param] / f"t-{request.node.name[:28]}"
    d.mkdir()
    return d


def sh(cmd: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=300, check=False, env=env
    )


@needs("git")
def test_git_clone_commit_and_fsck(home: Path, tmp_path: Path) -> None:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="a",
        GIT_AUTHOR_EMAIL="a@x",
        GIT_COMMITTER_NAME="a",
        GIT_COMMITTER_EMAIL="a@x",
        HOME=str(tmp_path),
    )
    origin = tmp_path / "origin"
    origin.mkdir()
    assert (
        sh(
            "git init -q && for i in 1 2 3; do echo $i > f$i; git add f$i; "
            "git commit -qm c$i; done",
            origin,
            env,
        ).returncode
        == 0
    )
    r = sh(f"git clone -q {origin} clone", home, env)
    assert r.returncode == 0, r.stderr
    clone = home / "clone"
    r = sh(
        "echo 4 > f4 && git add f4 && git commit -qm c4 && git fsck --strict && "
        "git log --oneline | wc -l",
        clone,
        env,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "4"
    assert (clone / "f2").read_text() == "2\n"


@needs("sqlite3")
def test_sqlite3_database_survives_writes_and_reads_back(home: Path) -> None:
    r = sh(
        "sqlite3 cat.db 'create table s(id integer primary key, ra real, dec real);' && "
        'for i in $(seq 50); do echo "insert into s(ra, dec) values($i.5, -$i.25);"; '
        "done | sqlite3 cat.db && sqlite3 cat.db 'pragma integrity_check; "
        "select count(*), sum(ra) from s;'",
        home,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "50|1300.0"]


def test_sed_i_rewrites_in_place_by_renaming_a_temporary_file(home: Path) -> None:
    (home / "conf.txt").write_text("alpha = 1\nbeta = 2\n")
    r = sh("sed -i 's/beta = 2/beta = 3/' conf.txt && sed -i '1d' conf.txt", home)
    assert r.returncode == 0, r.stderr
    assert (home / "conf.txt").read_text() == "beta = 3\n"
    assert sorted(os.listdir(home)) == ["conf.txt"]


@needs("vim")
def test_vim_edits_and_saves(home: Path) -> None:
    (home / "notes.txt").write_text("first\n")
    r = sh("vim -N -u NONE -i NONE -n -es -c 'normal Gosecond' -c 'wq' notes.txt", home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (home / "notes.txt").read_text() == "first\nsecond\n"
    r = sh(
        "vim -N -u NONE -i NONE -es -c 'set backup writebackup' -c 'normal ggdd' -c 'wq' notes.txt",
        home,
    )  # with a swap file and a backup renamed aside
    assert r.returncode == 0, r.stdout + r.stderr
    assert (home / "notes.txt").read_text() == "second\n"
