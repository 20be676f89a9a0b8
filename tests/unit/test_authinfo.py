"""The credentials' state that ``canfarfs status`` shows, and the systemd readiness note."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from canfarfs import errors
from canfarfs.authinfo import AuthInfo, describe_line
from canfarfs.emulator.tls import mint_proxy
from canfarfs.mountcmd import sd_notify


async def test_token_failures_are_recorded_and_cleared() -> None:
    state = {"fail": True}

    async def provider() -> str:
        if state["fail"]:
            raise errors.AuthExpired("the access token has expired and cannot be refreshed")
        return "tok"

    auth = AuthInfo(kind="oidc", source="config.yaml", token_expiry=lambda: 2e9)
    get = auth.wrap(provider)
    with pytest.raises(errors.AuthExpired):
        await get()
    doc = auth.describe()
    assert doc["state"] == "failing"
    assert "cannot be refreshed" in doc["last_error"]
    assert "failing: the access token has expired" in describe_line(doc)
    state["fail"] = False
    assert await get() == "tok"
    doc = auth.describe()
    assert (doc["state"], doc["last_error"], doc["expires"]) == ("ok", None, 2e9)


def test_certificate_subject_and_expiry_are_read_from_the_file(tmp_path: Path) -> None:
    pem = tmp_path / "proxy.pem"
    mint_proxy(tmp_path / "emu", "alice", pem, lifetime=timedelta(days=3))
    auth = AuthInfo(kind="certificate", source="--cert-file", cert_file=str(pem))
    doc = auth.describe()
    assert doc["state"] == "ok"
    assert doc["subject"].startswith("CN=alice_")
    assert 2.9 * 86400 < doc["expires"] - time.time() <= 3 * 86400
    line = describe_line(doc)
    assert line.startswith("an X.509 certificate CN=alice_")
    assert "from --cert-file, valid until" in line
    assert "(3 days left)" in line
    # Renewed (or replaced by an expired one) while mounted: the file is read again.
    mint_proxy(tmp_path / "emu", "alice", pem, not_after=datetime.now(UTC) - timedelta(minutes=5))
    doc = auth.describe()
    assert doc["state"] == "expired"
    assert "EXPIRED at" in describe_line(doc)
    pem.unlink()
    assert auth.describe()["state"] == "failing"


def test_sd_notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False
    for address in (str(tmp_path / "notify"), f"@canfarfs-test-{os.getpid()}"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(address if address[0] == "/" else "\0" + address[1:])
            sock.settimeout(5)
            monkeypatch.setenv("NOTIFY_SOCKET", address)
            assert sd_notify("READY=1\nSTATUS=mounted") is True
            assert sock.recv(100) == b"READY=1\nSTATUS=mounted"
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sd_notify("READY=1") is False
