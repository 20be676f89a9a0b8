"""Shared fixtures: the emulator in-process (ASGI) and over a socket (subprocess)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
import pytest

from canfarfs.emulator.app import Emulator, build_emulator
from canfarfs.emulator.config import add_user, load_config

if TYPE_CHECKING:
    from canfarfs.skaha import SkahaClient
    from tests.mount_util import Rig

TOKEN = "test-token-alice"
BOB_TOKEN = "test-token-bob"
USER = "alice"
BASE = "http://emu.invalid"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """The emulator app in-process, user alice (token TOKEN), with bob as a second user."""
    root = tmp_path / "emu"
    root.mkdir()
    add_user(root, "bob", BOB_TOKEN, ["survey-team"])
    config = load_config(root, user=USER, token=TOKEN, groups=frozenset({"survey-team"}))
    emu = build_emulator(config)
    yield emu
    emu.close()


def make_client(emulator: Emulator, token: str | None = TOKEN) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=emulator.app), base_url=BASE, headers=headers
    )


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[httpx2.AsyncClient]:
    async with make_client(emulator) as c:
        yield c


@dataclass
class LiveEmulator:
    """A ``canfarfs emulator`` subprocess on a free loopback port."""

    url: str
    token: str
    root: Path
    proc: subprocess.Popen[str]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()

    # The emulator's token-protected control endpoint (faults, request counts).

    def _control(
        self, method: str, name: str, plan: dict[str, object] | None = None, check: bool = True
    ) -> Any:
        r = httpx2.request(
            method,
            f"{self.url}/_emulator/{name}",
            json=plan,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        if check:
            assert r.status_code == 200, r.text
        return r.json() if name == "stats" and method == "GET" else None

    def faults(self, **plan: object) -> None:
        self._control("POST", "faults", plan)

    def clear_faults(self) -> None:
        """Best effort (teardown): the answer is not checked."""
        self._control("DELETE", "faults", check=False)

    def stats(self) -> dict[str, Any]:
        got: dict[str, Any] = self._control("GET", "stats")
        return got

    def reset_stats(self) -> None:
        self._control("DELETE", "stats")


def start_live_emulator(root: Path, port: int = 0, extra: list[str] | None = None) -> LiveEmulator:
    cmd = [
        sys.executable,
        "-m",
        "canfarfs",
        "emulator",
        "--root",
        str(root),
        "--port",
        str(port),
        "--user",
        USER,
        "--token",
        TOKEN,
        *(extra or []),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise RuntimeError(f"emulator did not start: {url!r} {err}")
    return LiveEmulator(url=url, token=TOKEN, root=root, proc=proc)


@pytest.fixture
def live_emulator(tmp_path: Path) -> Iterator[LiveEmulator]:
    root = tmp_path / "live"
    root.mkdir()
    add_user(root, "bob", BOB_TOKEN, ["survey-team"])
    live = start_live_emulator(root)
    yield live
    live.stop()


def have_tool(name: str) -> bool:
    return shutil.which(name) is not None


def clean_env(home: Path) -> dict[str, str]:
    """An environment with a throw-away HOME, so no real client config is read or written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CANFAR_", "VOSPACE_"))}
    env["HOME"] = str(home)
    return env


@pytest.fixture(scope="module")
def tls_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEmulator]:
    """The emulator over HTTPS (``--tls``: its own CA, client certificates accepted)."""
    root = tmp_path_factory.mktemp("tls") / "emu"
    root.mkdir()
    live = start_live_emulator(root, extra=["--tls"])
    yield live
    live.stop()
    live.proc.communicate(timeout=10)  # close the pipes


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """An emulator on a socket (faults injectable over HTTP) and a mount of it."""
    from tests.mount_util import Rig, mount_args, start_mount  # mount_util imports us

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


@pytest.fixture
async def skaha(emulator: Emulator) -> AsyncIterator[SkahaClient]:
    """A client on the emulator, with its sessions running (headless = local processes)."""
    from canfarfs.skaha import SkahaClient
    from tests.skaha_util import make_http, running  # skaha_util imports us

    async with running(emulator):
        http = make_http(emulator)
        try:
            yield SkahaClient(http, f"{BASE}/skaha/v1")
        finally:
            await http.aclose()


@pytest.fixture
def live(live_emulator: LiveEmulator) -> Iterator[LiveEmulator]:
    """``live_emulator``, with its stdout/stderr pipes closed after it stops.

    conftest's ``LiveEmulator.stop`` leaves both pipes open; under ``filterwarnings =
    error`` the resulting ResourceWarning fails whichever test runs next.
    """
    yield live_emulator
    live_emulator.stop()
    for pipe in (live_emulator.proc.stdout, live_emulator.proc.stderr):
        if pipe is not None:
            pipe.close()
