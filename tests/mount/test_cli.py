"""The command line as a user meets it: mount in the background, status, sync, umount,
and one clear line (never a traceback) for every mistake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.emulator_util import TOKEN, LiveEmulator, start_live_emulator
from tests.mount_util import is_mounted, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse]


def canfarfs(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canfarfs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveEmulator]:
    root = tmp_path / "emu"
    root.mkdir()
    emu = start_live_emulator(root)
    yield emu
    emu.stop()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, CANFARFS_USER="alice", XDG_STATE_HOME=str(tmp_path / "state"))


def remote_args(live: LiveEmulator, tmp_path: Path) -> list[str]:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    return [
        "--arc-url",
        f"{live.url}/arc",
        "--vault-url",
        f"{live.url}/vault",
        "--token-file",
        str(token),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--timeout",
        "2",
    ]


@pytest.mark.parametrize("command", ["mount", "umount", "status", "sync", "emulator"])
def test_each_commands_help_opens_with_its_own_usage(command: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "canfarfs", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0
    assert r.stdout.startswith(f"usage: canfarfs {command} [-h]")


def test_mount_returns_when_ready_and_status_sync_umount_work(
    live: LiveEmulator, tmp_path: Path, env: dict[str, str]
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = canfarfs("mount", str(mnt), *remote_args(live, tmp_path), env=env)
    assert r.returncode == 0, r.stderr
    assert is_mounted(mnt)
    try:
        (mnt / "arc/home/alice/a.txt").write_text("hello")
        st = canfarfs("status", str(mnt), "--json", env=env)
        assert st.returncode == 0, st.stderr
        doc = json.loads(st.stdout)
        assert doc["services"]["arc"]["reachable"] is True
        assert doc["uploads"] == []
        assert TOKEN not in st.stdout
        text = canfarfs("status", str(mnt), env=dict(env, COLUMNS="80"))
        assert "No pending uploads" in text.stdout
        # In 80 columns, the cache line is not split from its path (it was, at "in").
        [cache_dir] = [
            line for line in text.stdout.splitlines() if line.startswith("Cache directory: ")
        ]
        assert cache_dir.endswith(str(tmp_path / "cache"))
        assert any(
            line.startswith("Cache: ") and line.endswith(" used of 10.0 GiB")
            for line in text.stdout.splitlines()
        )
        assert canfarfs("sync", str(mnt), env=env).returncode == 0
    finally:
        u = canfarfs("umount", str(mnt), env=env)
    assert u.returncode == 0, u.stderr
    assert not is_mounted(mnt)
    log = (tmp_path / "state" / "canfarfs" / "canfarfs.log").read_text()
    assert TOKEN not in log


def test_failed_upload_is_reported_kept_and_synced_later(
    live: LiveEmulator, tmp_path: Path, env: dict[str, str]
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert canfarfs("mount", str(mnt), *remote_args(live, tmp_path), env=env).returncode == 0
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        httpx2.post(
            f"{live.url}/_emulator/faults",
            headers=auth,
            json={"fail_rate": 1.0, "methods": ["PUT"], "fail_status": 503},
        )
        with pytest.raises(OSError):
            (mnt / "arc/home/alice/later.txt").write_text("not yet")
        doc = json.loads(canfarfs("status", str(mnt), "--json", env=env).stdout)
        [pending] = doc["uploads"]
        assert pending["name"] == "arc/home/alice/later.txt"
        assert pending["tries"] >= 1
        assert Path(pending["kept_at"]).read_text() == "not yet"
        refused = canfarfs("umount", str(mnt), env=env)
        assert refused.returncode != 0
        assert "uploads still failing" in refused.stderr
        httpx2.delete(f"{live.url}/_emulator/faults", headers=auth)
        s = canfarfs("sync", str(mnt), env=env)
        assert s.returncode == 0, s.stdout + s.stderr
        assert json.loads(canfarfs("status", str(mnt), "--json", env=env).stdout)["uploads"] == []
        r = httpx2.get(f"{live.url}/arc/files/home/alice/later.txt", headers=auth)
        assert r.text == "not yet"
    finally:
        httpx2.delete(f"{live.url}/_emulator/faults", headers=auth)
        canfarfs("umount", str(mnt), "--force", env=env)


def test_umount_refuses_while_files_are_open(
    live: LiveEmulator, tmp_path: Path, env: dict[str, str]
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert canfarfs("mount", str(mnt), *remote_args(live, tmp_path), env=env).returncode == 0
    try:
        with open(mnt / "arc/home/alice/open.txt", "w") as f:
            f.write("x")
            r = canfarfs("umount", str(mnt), env=env)
            assert r.returncode != 0
            assert "open file" in r.stderr
        assert canfarfs("umount", str(mnt), env=env).returncode == 0
    finally:
        if is_mounted(mnt):
            canfarfs("umount", str(mnt), "--force", env=env)


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("missing", [], "does not exist"),
        ("nonempty", [], "is not empty"),
        ("dir", ["--timeout", "-1", "--local", "DATA"], "--timeout must be positive"),
        ("dir", [], "say where the storage is"),
        (
            "dir",
            [
                "--token-file",
                "/nonexistent/token",
                "--arc-url",
                "http://x/arc",
                "--vault-url",
                "http://x/vault",
            ],
            "cannot read token file",
        ),
    ],
)
def test_user_errors_are_one_clear_line(
    tmp_path: Path, env: dict[str, str], setup: str, args: list[str], message: str
) -> None:
    mnt = tmp_path / "mnt"
    if setup != "missing":
        mnt.mkdir()
    if setup == "nonempty":
        (mnt / "file").write_text("x")
    args = [a.replace("DATA", str(tmp_path / "data")) for a in args]
    r = canfarfs("mount", str(mnt), *args, env=env)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unknown_option_and_umount_of_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    r = canfarfs("mount", str(tmp_path), "--no-such-option", env=env)
    assert r.returncode == 2
    assert "unrecognized arguments" in r.stderr
    u = canfarfs("umount", str(tmp_path), env=env)
    assert u.returncode != 0
    assert "is not mounted" in u.stderr
    s = canfarfs("status", str(tmp_path), env=env)
    assert s.returncode != 0
    assert "is not a canfarfs mount" in s.stderr
