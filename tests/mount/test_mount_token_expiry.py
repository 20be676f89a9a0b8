"""The access token expiring in the middle of work on the mount (issue 7).

The emulator issues access tokens that live ``LIFETIME`` seconds. The mount starts from a
``canfar`` configuration holding such a token, then writes, reads and lists on arc and
vault, lists ``sessions/``, and runs two ``cp`` commands that last across the token's
expiry, for about ``WORK`` seconds — several lifetimes. Nothing may fail; the
configuration file must have been rewritten (atomically: a reader polling it never sees
a partial file; mode 0600) with new tokens; refreshes must follow the lifetime rather than
happen before every request; and the first tokens must really be refused by the emulator
afterwards, so the work could only have succeeded by refreshing.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest
import yaml

from tests.emulator_util import TOKEN, LiveEmulator
from tests.login_util import canfar_config
from tests.mount_util import Mount, needs_fuse, start_mount

pytestmark = [needs_fuse, pytest.mark.fuse]
#: Access-token lifetime at the emulator, seconds.
LIFETIME = 6
#: How long the mount is worked after it is up, seconds.
WORK = 16.0


def refresh_grant(url: str, grant: dict[str, str]) -> dict[str, object]:
    r = httpx2.post(
        f"{url}/oidc/token",
        auth=(grant["client_id"], grant["client_secret"]),
        data={"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    answer: dict[str, object] = r.json()
    return answer


def answer_for(url: str, token: str) -> httpx2.Response:
    return httpx2.get(
        f"{url}/arc/nodes/home/alice", timeout=10, headers={"Authorization": f"Bearer {token}"}
    )


@dataclass
class ConfigWatch:
    """Polls the configuration file the way another reader (the canfar CLI) would."""

    path: Path
    tokens: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    inodes: set[int] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                st = self.path.stat()
                text = self.path.read_text()
            except FileNotFoundError:  # os.replace never leaves the name missing
                self.problems.append("the file was missing")
                continue
            self.inodes.add(st.st_ino)
            if stat.S_IMODE(st.st_mode) != 0o600:
                self.problems.append(f"mode {stat.S_IMODE(st.st_mode):o}")
            try:
                access = yaml.safe_load(text)["authentication"]["srcnet"]["token"]["access"]
            except (yaml.YAMLError, KeyError, TypeError) as exc:
                self.problems.append(f"unreadable ({type(exc).__name__}): {len(text)} bytes")
                continue
            if not self.tokens or self.tokens[-1] != access:
                self.tokens.append(access)
            time.sleep(0.005)


def slow_feed(fifo: Path, payload: bytes, seconds: float) -> None:
    """Write ``payload`` into a FIFO over ``seconds`` (``cp`` reads the other end)."""
    step = len(payload) // 40
    with open(fifo, "wb") as f:
        for i in range(0, len(payload), step):
            f.write(payload[i : i + step])
            f.flush()
            time.sleep(seconds / 40)


def slow_drain(fifo: Path, size: int, seconds: float, out: list[bytes]) -> None:
    """Read ``size`` bytes from a FIFO over ``seconds``, so the ``cp`` writing into it
    reads the mount slowly."""
    chunks = []
    with open(fifo, "rb") as f:
        while chunk := f.read(size // 40):
            chunks.append(chunk)
            time.sleep(seconds * len(chunk) / size)
    out.append(b"".join(chunks))


@pytest.fixture
def rig(live_emulator: LiveEmulator, tmp_path: Path) -> Iterator[tuple[Mount, Path, str, Path]]:
    url = live_emulator.url
    r = httpx2.post(
        f"{url}/oidc/_settings",
        json={"access_token_lifetime": LIFETIME},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    grant = yaml.safe_load((live_emulator.root / "oidc.json").read_text())
    first = refresh_grant(url, grant)  # the token the mount starts with: LIFETIME s left
    doc = canfar_config(
        url,
        {**grant, "refresh_token": str(first["refresh_token"])},
        access=str(first["access_token"]),
    )
    doc["authentication"]["srcnet"]["expiry"]["access"] = time.time() + float(
        str(first["expires_in"])
    )
    home = tmp_path / "home"
    config = home / ".canfar" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(yaml.safe_dump(doc, sort_keys=True))
    os.chmod(config, 0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANFAR")}
    env.update(HOME=str(home), CANFARFS_USER="alice", XDG_STATE_HOME=str(home / "state"))
    m = start_mount(
        tmp_path / "mnt",
        ["--cache-dir", str(tmp_path / "cache"), "--timeout", "5", "--meta-ttl", "1"],
        env=env,
    )
    yield m, config, str(first["access_token"]), home
    m.unmount()


def test_operations_continue_across_token_expiry(
    rig: tuple[Mount, Path, str, Path],
    live_emulator: LiveEmulator,
    tmp_path: Path,
) -> None:
    mount, config, first_token, home = rig
    url = live_emulator.url
    watch = ConfigWatch(config)
    watcher = threading.Thread(target=watch.run, daemon=True)
    watcher.start()
    start = time.monotonic()
    arc, vault = mount.path / "arc/home/alice/expiry", mount.path / "vault/alice/expiry"
    arc.mkdir()
    vault.mkdir()

    # Two cp's that each last about two token lifetimes: one into the mount (its
    # upload happens at the end, with a token that did not exist when it started), one
    # out of it (a 24 MB read through a slow pipe).
    payload = (hashlib.sha256(b"expiry").digest() * (1 << 15))[: 1 << 20] * 24
    (vault / "big.bin").write_bytes(payload)
    fifo_in, fifo_out = tmp_path / "in.fifo", tmp_path / "out.fifo"
    os.mkfifo(fifo_in)
    os.mkfifo(fifo_out)
    drained: list[bytes] = []
    span = 2.2 * LIFETIME
    feeder = threading.Thread(target=slow_feed, args=(fifo_in, payload[: 8 << 20], span))
    drainer = threading.Thread(target=slow_drain, args=(fifo_out, len(payload), span, drained))
    feeder.start()
    drainer.start()
    cp_in = subprocess.Popen(
        ["cp", str(fifo_in), str(arc / "spanning.bin")], stderr=subprocess.PIPE, text=True
    )
    cp_out = subprocess.Popen(
        ["cp", str(vault / "big.bin"), str(fifo_out)], stderr=subprocess.PIPE, text=True
    )

    done = 0
    while time.monotonic() - start < WORK:
        when = f"{time.monotonic() - start:.1f} s after the mount"
        for d in (arc, vault):
            data = f"{d.name} step {done}\n".encode() * 100
            try:
                (d / f"f{done % 5}.txt").write_bytes(data)
                assert (d / f"f{done % 5}.txt").read_bytes() == data, when
                assert f"f{done % 5}.txt" in os.listdir(d), when
                os.listdir(mount.path / "sessions")
            except OSError as exc:
                pytest.fail(f"{exc!r} at {when}\n{mount.log_text()[-3000:]}")
        done += 1
        time.sleep(0.2)

    _, err_in = cp_in.communicate(timeout=60)
    _, err_out = cp_out.communicate(timeout=60)
    feeder.join(30)
    drainer.join(30)
    assert cp_in.returncode == 0, err_in
    assert cp_out.returncode == 0, err_out
    assert drained == [payload]
    assert (arc / "spanning.bin").read_bytes() == payload[: 8 << 20]
    os.listdir(mount.path / "sessions")
    elapsed = time.monotonic() - start
    watch.stop.set()
    watcher.join(5)

    # The refresh really happened, and the file stayed whole and private throughout.
    assert not watch.problems, watch.problems[:5]
    assert watch.tokens[0] == first_token
    refreshed = watch.tokens[1:]
    assert len(refreshed) >= elapsed // LIFETIME, (len(refreshed), elapsed)
    # ... as the lifetime asks, not before every request (half a lifetime each at most)
    assert len(refreshed) <= elapsed / (LIFETIME / 2) + 2, (len(refreshed), elapsed)
    assert len(watch.inodes) >= 2, "rewritten by replacing the file"
    saved = yaml.safe_load(config.read_text())
    assert saved["authentication"]["srcnet"]["token"]["access"] == watch.tokens[-1]
    assert set(saved) == {"version", "active", "authentication", "servers"}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert [p.name for p in config.parent.iterdir()] == ["config.yaml"], "temporary left"
    log = (home / "state/canfarfs/canfarfs.log").read_text()
    assert log.count("access token refreshed") == len(refreshed)
    assert not any(t in log for t in watch.tokens)

    # The old tokens are expired at the emulator: without the refresh, work would fail.
    for token in (first_token, refreshed[0]):
        r = answer_for(url, token)
        assert r.status_code == 401, (r.status_code, r.text)
        assert "expired" in r.text, r.text
    print(
        f"\n{done} rounds in {elapsed:.1f} s; {len(refreshed)} refreshes; "
        f"token lifetime {LIFETIME} s"
    )
