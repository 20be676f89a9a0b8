"""Reusing the canfar CLI's login: a mount with no endpoint flags, a token refreshed
through the emulator's token endpoint, and clear refusals for bad credentials."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from canfarfs.emulator.tls import mint_proxy
from tests.emulator_util import LiveEmulator
from tests.login_util import canfar_config
from tests.mount_util import needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse]


def canfarfs(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANFAR")}
    env.update(HOME=str(home), CANFARFS_USER="alice", XDG_STATE_HOME=str(home / "state"))
    return subprocess.run(
        [sys.executable, "-m", "canfarfs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_mount_with_the_canfar_login_refreshes_the_token(
    live_emulator: LiveEmulator, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    config = home / ".canfar" / "config.yaml"
    config.parent.mkdir(parents=True)
    grant = json.loads((live_emulator.root / "oidc.json").read_text())
    config.write_text(yaml.safe_dump(canfar_config(live_emulator.url, grant)))
    os.chmod(config, 0o600)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = canfarfs(home, "mount", str(mnt), "--cache-dir", str(tmp_path / "cache"))
    assert r.returncode == 0, r.stderr
    try:
        (mnt / "arc/home/alice/hello.txt").write_text("via the canfar login")
        assert (mnt / "arc/home/alice/hello.txt").read_text() == "via the canfar login"
        assert "images" in os.listdir(mnt / "sessions")
        saved = yaml.safe_load(config.read_text())
        record = saved["authentication"]["srcnet"]
        assert record["token"]["access"] != "expired"
        assert record["token"]["refresh"] != grant["refresh_token"]  # rotated
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert set(saved) == {"version", "active", "authentication", "servers"}  # no new keys
        log = (home / "state/canfarfs/canfarfs.log").read_text()
        assert record["token"]["access"] not in log
        assert grant["refresh_token"] not in log
    finally:
        canfarfs(home, "umount", str(mnt))


def test_without_flags_or_login_the_user_is_told_what_to_do(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = canfarfs(home, "mount", str(mnt))
    assert r.returncode != 0
    assert "canfar auth login" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("case", ["missing", "expired"])
def test_bad_certificates_are_refused_in_one_line(
    live_emulator: LiveEmulator, tmp_path: Path, case: str
) -> None:
    home = tmp_path / "home"
    config = home / ".canfar" / "config.yaml"
    config.parent.mkdir(parents=True)
    cert = home / ".ssl" / "cadcproxy.pem"
    cert.parent.mkdir()
    if case == "expired":
        mint_proxy(
            live_emulator.root, "alice", cert, not_after=datetime.now(UTC) - timedelta(days=1)
        )
    doc = canfar_config(
        live_emulator.url, {"client_id": "x", "client_secret": "y", "refresh_token": "z"}
    )
    doc["authentication"] = {
        "cadc": {"mode": "x509", "idp": "cadc", "path": str(cert), "expiry": 0.0}
    }
    doc["active"]["authentication"] = "cadc"
    config.write_text(yaml.safe_dump(doc))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = canfarfs(home, "mount", str(mnt))
    assert r.returncode != 0
    assert ("does not exist" if case == "missing" else "expired") in r.stderr
    assert "canfar auth login" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
