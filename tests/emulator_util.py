"""The emulator as tests use it: the test users' tokens, a client on the in-process app,
and ``canfarfs emulator`` as a subprocess on a socket (``LiveEmulator``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from canfarfs.emulator.app import Emulator

TOKEN = "test-token-alice"
BOB_TOKEN = "test-token-bob"
USER = "alice"
BASE = "http://emu.invalid"


def make_client(emulator: Emulator, token: str | None = TOKEN) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=emulator.app), base_url=BASE, headers=headers
    )


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
    # Its log goes to a file: a pipe nobody reads fills up (64 KiB) under a stream of
    # faulted requests, and the emulator then blocks on its next log line.
    log = root.parent / f"{root.name}-emulator.log"
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"emulator did not start: {url!r} {log.read_text()[-2000:]}")
    return LiveEmulator(url=url, token=TOKEN, root=root, proc=proc)


def have_tool(name: str) -> bool:
    return shutil.which(name) is not None


def clean_env(home: Path) -> dict[str, str]:
    """An environment with a throw-away HOME, so no real client config is read or written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CANFAR_", "VOSPACE_"))}
    env["HOME"] = str(home)
    return env
