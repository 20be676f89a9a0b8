"""Real mounts for end-to-end tests: start the daemon, wait for it, unmount cleanly."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.emulator_util import TOKEN, LiveEmulator, start_live_emulator

FUSE_OK = Path("/dev/fuse").exists() and shutil.which("fusermount3") is not None
needs_fuse = pytest.mark.skipif(not FUSE_OK, reason="needs /dev/fuse and fusermount3")
#: Network bound of a fault-injection rig's mount (short, so faults show quickly).
RIG_TIMEOUT = 3.0


def is_mounted(path: Path) -> bool:
    target = str(path.absolute())
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


@dataclass
class Mount:
    """A ``canfarfs mount --foreground`` subprocess and its mount point."""

    path: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def unmount(self) -> None:
        if is_mounted(self.path):
            r = subprocess.run(
                ["fusermount3", "-u", str(self.path)], capture_output=True, check=False
            )
            if r.returncode != 0:
                subprocess.run(["fusermount3", "-uz", str(self.path)], check=False)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_mount(
    mountpoint: Path, args: list[str], env: dict[str, str] | None = None, timeout: float = 30.0
) -> Mount:
    mountpoint.mkdir(parents=True, exist_ok=True)
    log = mountpoint.parent / f"{mountpoint.name}.log"
    cmd = [sys.executable, "-m", "canfarfs", "mount", str(mountpoint), "--foreground", *args]
    full_env = dict(os.environ if env is None else env)
    full_env.setdefault("XDG_STATE_HOME", str(mountpoint.parent / "state"))
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    deadline = time.monotonic() + timeout
    while not is_mounted(mountpoint):
        if proc.poll() is not None:
            raise RuntimeError(f"mount exited with {proc.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"mount not ready after {timeout} s:\n{log.read_text()}")
        time.sleep(0.05)
    return Mount(mountpoint, proc, log)


def local_mount(base: Path, *extra: str, user: str = "alice") -> Iterator[Mount]:
    """A mount of the bundled local platform under ``base`` (a fixture body): yields the
    mount, then unmounts and checks the daemon exited cleanly without a traceback."""
    env = dict(os.environ, CANFARFS_USER=user)
    m = start_mount(
        base / "mnt",
        ["--local", str(base / "data"), "--cache-dir", str(base / "cache"), *extra],
        env=env,
    )
    yield m
    m.unmount()
    assert m.proc.returncode == 0, m.log_text()
    assert "Traceback" not in m.log_text()


def emulator_mount(base: Path, url: str, token: str, *extra: str, user: str = "alice") -> Mount:
    """A mount of an emulator already serving at ``url`` (``--arc-url``/``--vault-url``
    with a token file), its mount point, cache and token under ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    token_file = base / "token"
    token_file.write_text(token)
    return start_mount(
        base / "mnt",
        [
            "--arc-url",
            f"{url}/arc",
            "--vault-url",
            f"{url}/vault",
            "--token-file",
            str(token_file),
            "--cache-dir",
            str(base / "cache"),
            *extra,
        ],
        env=dict(os.environ, CANFARFS_USER=user),
    )


def sh(cmd: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in a shell, as a user types it; the caller checks the outcome."""
    return subprocess.run(
        cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )  # tests drive a shell


def ok(cmd: str, cwd: Path, timeout: float = 60) -> str:
    """``sh`` that must exit 0; its standard output."""
    r = sh(cmd, cwd, timeout)
    assert r.returncode == 0, f"{cmd}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def wait_until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``predicate`` every 0.1 s; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def errno_of(fn: Callable[..., object], *args: object) -> int:
    """The errno ``fn(*args)`` fails with, 0 if it succeeds."""
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno or 0
    return 0


@dataclass
class Rig:
    live: LiveEmulator
    mount: Mount
    tmp: Path
    mount_args: list[str]

    def faults(self, **plan: object) -> None:
        self.live.faults(**plan)

    def clear(self) -> None:
        self.live.clear_faults()

    def node(self, service: str, path: str) -> httpx2.Response:
        return httpx2.get(
            f"{self.live.url}/{service}/nodes/{path}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )

    def restart_emulator(self) -> None:
        port = int(self.live.url.rsplit(":", 1)[1])
        self.live.stop()
        self.live = start_live_emulator(self.live.root, port=port)


def mount_args(url: str, tmp: Path) -> list[str]:
    token = tmp / "token"
    token.write_text(TOKEN)
    return [
        "--arc-url",
        f"{url}/arc",
        "--vault-url",
        f"{url}/vault",
        "--token-file",
        str(token),
        "--cache-dir",
        str(tmp / "cache"),
        "--timeout",
        str(RIG_TIMEOUT),
        "--meta-ttl",
        "1",
    ]


def home(rig: Rig, service: str) -> Path:
    return rig.mount.path / ("arc/home/alice" if service == "arc" else "vault/alice")


def data(n: int) -> bytes:
    return (hashlib.sha256(b"fault").digest() * (n // 32 + 1))[:n]
