"""A mount over HTTPS with an X.509 proxy certificate as the credential: the emulator
runs with ``--tls`` (its own CA), the mount trusts that CA with ``-o ca_file=`` and
presents a CADC-style proxy PEM with ``-o cert_file=`` — no token anywhere.

(An expired certificate from the canfar login is refused in tests/mount/test_login.py; here
the same for ``--cert-file``, and the other ways a certificate or CA file can be wrong.)
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from canfarfs.emulator.tls import mint_proxy
from tests.emulator_util import TOKEN, USER, LiveEmulator
from tests.mount_util import is_mounted, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse]


@pytest.fixture(scope="module")
def certs(tls_live: LiveEmulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("certs")
    mint_proxy(tls_live.root, USER, d / "alice.pem")
    mint_proxy(
        tls_live.root, USER, d / "expired.pem", not_after=datetime.now(UTC) - timedelta(hours=1)
    )
    cert_only = (d / "alice.pem").read_text().split("-----BEGIN RSA PRIVATE KEY-----")[0]
    (d / "nokey.pem").write_text(cert_only)
    (d / "garbage.pem").write_text("not a PEM\n")
    return {p.stem: p for p in d.glob("*.pem")} | {"ca": tls_live.root / "tls" / "ca.pem"}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No token from the environment and no canfar login: the certificate is all."""
    home = tmp_path / "home"
    home.mkdir()
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("CANFAR", "SSL_CERT", "XDG_"))
    }
    return dict(clean, HOME=str(home), CANFARFS_USER=USER, XDG_STATE_HOME=str(tmp_path / "state"))


def canfarfs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canfarfs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_certificate_mount_over_tls(
    tls_live: LiveEmulator, certs: dict[str, Path], tmp_path: Path, env: dict[str, str]
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = canfarfs(
        tls_live.url,
        str(mnt),
        "-o",
        f"cert_file={certs['alice']},ca_file={certs['ca']},cache_dir={tmp_path / 'cache'}",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    try:
        for home in (mnt / "arc/home" / USER, mnt / "vault" / USER):
            src = tmp_path / "src.bin"
            src.write_bytes(os.urandom(300_000))
            subprocess.run(["cp", str(src), str(home / "copied.bin")], check=True)
            assert (
                "copied.bin"
                in subprocess.run(
                    ["ls", str(home)], capture_output=True, text=True, check=True
                ).stdout.split()
            )
            cat = subprocess.run(["cat", str(home / "copied.bin")], capture_output=True, check=True)
            assert cat.stdout == src.read_bytes()
            subprocess.run(["rm", str(home / "copied.bin")], check=True)
            assert not (home / "copied.bin").exists()
        assert "images" in os.listdir(mnt / "sessions")  # Skaha over TLS too

        doc = json.loads(canfarfs("status", str(mnt), "--json", env=env).stdout)
        auth = doc["auth"]
        assert auth["kind"] == "certificate"
        assert auth["source"] == "--cert-file"
        assert auth["state"] == "ok"
        assert auth["subject"].startswith(f"CN={USER}_")
        assert 29 * 86400 < auth["expires"] - time.time() <= 30 * 86400  # mint_proxy: 30 d
        assert all(s["reachable"] for s in doc["services"].values())
        text = canfarfs("status", str(mnt), env=env).stdout
        assert "X.509 certificate" in text
        assert "valid until" in text
        assert "PRIVATE KEY" not in text + json.dumps(doc)
    finally:
        u = canfarfs("umount", str(mnt), env=env)
    assert u.returncode == 0, u.stderr
    assert not is_mounted(mnt)


def test_the_emulator_ca_is_not_trusted_without_ca_file(
    tls_live: LiveEmulator, certs: dict[str, Path], tmp_path: Path, env: dict[str, str]
) -> None:
    """Verification is always on: without --ca-file the private CA is refused, and
    status says why."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = canfarfs(
        "mount",
        str(mnt),
        "--arc-url",
        f"{tls_live.url}/arc",
        "--vault-url",
        f"{tls_live.url}/vault",
        "--cert-file",
        str(certs["alice"]),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--timeout",
        "3",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    try:
        with pytest.raises(OSError) as info:
            os.listdir(mnt / "arc/home")
        assert info.value.errno == errno.EIO
        doc = json.loads(canfarfs("status", str(mnt), "--json", env=env).stdout)
        assert "CERTIFICATE_VERIFY_FAILED" in doc["services"]["arc"]["last_error"]
    finally:
        u = canfarfs("umount", str(mnt), env=env)
    assert u.returncode == 0, u.stderr


def test_a_token_and_the_ca_file_work_too(
    tls_live: LiveEmulator, certs: dict[str, Path], tmp_path: Path, env: dict[str, str]
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    token = tmp_path / "token"
    token.write_text(TOKEN)
    r = canfarfs(
        tls_live.url,
        str(mnt),
        "-o",
        f"token_file={token},ca_file={certs['ca']},cache_dir={tmp_path / 'cache'}",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    try:
        (mnt / "vault" / USER / "t.txt").write_text("token over TLS")
        assert (mnt / "vault" / USER / "t.txt").read_text() == "token over TLS"
        auth = json.loads(canfarfs("status", str(mnt), "--json", env=env).stdout)["auth"]
        assert (auth["kind"], auth["expires"]) == ("token", None)
        assert auth["source"] == f"--token-file {token}"
    finally:
        assert canfarfs("umount", str(mnt), env=env).returncode == 0


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("cert_file=CERTS/expired.pem", "expired; get a new one"),
        ("cert_file=CERTS/missing.pem", "does not exist"),
        ("cert_file=CERTS/nokey.pem", "is not a certificate with its key"),
        ("cert_file=CERTS/garbage.pem", "is not a certificate with its key"),
        ("ca_file=CERTS/missing.pem", "cannot use --ca-file"),
        ("ca_file=CERTS/garbage.pem", "cannot use --ca-file"),
    ],
)
def test_bad_certificate_or_ca_file_is_one_line(
    tls_live: LiveEmulator,
    certs: dict[str, Path],
    tmp_path: Path,
    env: dict[str, str],
    option: str,
    message: str,
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    option = option.replace("CERTS", str(certs["alice"].parent))
    extra = "" if option.startswith("cert_file") else f",cert_file={certs['alice']}"
    r = canfarfs(tls_live.url, str(mnt), "-o", f"{option}{extra}", env=env)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not is_mounted(mnt)


def test_the_canfar_source_with_an_x509_login(
    tls_live: LiveEmulator, certs: dict[str, Path], tmp_path: Path, env: dict[str, str]
) -> None:
    """Source ``canfar``: URLs and the proxy certificate from ~/.canfar/config.yaml
    (``mode: x509``), the CA from ``-o ca_file``."""
    from tests.login_util import canfar_config

    config = Path(env["HOME"]) / ".canfar" / "config.yaml"
    config.parent.mkdir()
    doc = canfar_config(
        tls_live.url, {"client_id": "x", "client_secret": "y", "refresh_token": "z"}
    )
    doc["authentication"] = {
        "cadc": {"mode": "x509", "idp": "cadc", "path": str(certs["alice"]), "expiry": 0.0}
    }
    doc["active"]["authentication"] = "cadc"
    config.write_text(yaml.safe_dump(doc))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = canfarfs(
        "canfar", str(mnt), "-o", f"ca_file={certs['ca']},cache_dir={tmp_path / 'c'}", env=env
    )
    assert r.returncode == 0, r.stderr
    try:
        (mnt / "arc/home" / USER / "login.txt").write_text("x509 login")
        assert (mnt / "arc/home" / USER / "login.txt").read_text() == "x509 login"
        auth = json.loads(canfarfs("status", str(mnt), "--json", env=env).stdout)["auth"]
        assert (auth["kind"], auth["source"], auth["state"]) == ("certificate", str(config), "ok")
        assert auth["file"] == str(certs["alice"])
    finally:
        assert canfarfs("umount", str(mnt), env=env).returncode == 0
