"""``canfarfs emulator --tls``: HTTPS with a generated CA, client certificates as credentials.

The emulator runs as a subprocess (the real command line); clients trust
``<root>/tls/ca.pem`` and present proxy PEMs minted by :func:`mint_proxy`.
"""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
import trio

from canfarfs.emulator.app import Emulator
from canfarfs.emulator.server import serve_emulator
from canfarfs.emulator.tls import PROXY_LIFETIME, ServerTLS, ensure_server_tls, mint_proxy
from tests.emulator_util import TOKEN, USER, LiveEmulator


@pytest.fixture(scope="module")
def proxies(tls_live: LiveEmulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Proxy PEMs: alice (valid), alice (expired), mallory (unknown user), foreign CA."""
    d = tmp_path_factory.mktemp("certs")
    past = datetime.now(UTC) - timedelta(hours=1)
    mint_proxy(tls_live.root, USER, d / "alice.pem")
    mint_proxy(tls_live.root, USER, d / "expired.pem", not_after=past)
    mint_proxy(tls_live.root, "mallory", d / "mallory.pem")
    mint_proxy(d / "other-root", USER, d / "foreign.pem")
    return {p.stem: p for p in d.glob("*.pem")}


def chain_text(exc: BaseException) -> str:
    """The messages of an exception and of its causes (httpx2 keeps the SSL reason there)."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(parts)


def tls_files(live: LiveEmulator) -> ServerTLS:
    return ServerTLS(live.root / "tls")


def client(live: LiveEmulator, cert: Path | None = None, **kw: object) -> httpx2.AsyncClient:
    ctx = tls_files(live).client_context(cert)
    return httpx2.AsyncClient(base_url=live.url, verify=ctx, timeout=10, **kw)  # type: ignore[arg-type]


def test_files_and_modes(tls_live: LiveEmulator) -> None:
    d = tls_live.root / "tls"
    assert tls_live.url.startswith("https://127.0.0.1:")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for key in ("server-key.pem", "ca-key.pem"):
        assert stat.S_IMODE((d / key).stat().st_mode) == 0o600
    assert (d / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")


async def test_https_with_trusted_ca(tls_live: LiveEmulator) -> None:
    async with client(tls_live) as c:
        caps = await c.get("/reg/resource-caps")
        assert caps.status_code == 200
        assert f"ivo://cadc.nrc.ca/arc = {tls_live.url}/arc/capabilities" in caps.text
        assert (await c.get("/arc/capabilities")).status_code == 200


async def test_untrusted_without_ca(tls_live: LiveEmulator) -> None:
    async with httpx2.AsyncClient(base_url=tls_live.url, timeout=10) as c:
        with pytest.raises(httpx2.ConnectError) as info:
            await c.get("/reg/resource-caps")
    assert "CERTIFICATE_VERIFY_FAILED" in chain_text(info.value)


async def test_client_cert_is_a_credential(
    tls_live: LiveEmulator, proxies: dict[str, Path]
) -> None:
    async with client(tls_live, proxies["alice"]) as c:
        r = await c.get("/_emulator/stats")
    assert r.status_code == 200, r.text


async def test_no_credential_is_anonymous(tls_live: LiveEmulator) -> None:
    async with client(tls_live) as c:
        assert (await c.get("/_emulator/stats")).status_code == 403
        assert (await c.get("/reg/resource-caps")).status_code == 200


async def test_unknown_certificate_subject_is_401(
    tls_live: LiveEmulator, proxies: dict[str, Path]
) -> None:
    async with client(tls_live, proxies["mallory"]) as c:
        r = await c.get("/_emulator/stats")
    assert r.status_code == 401
    assert "certificate subject not known: CN=mallory_" in r.text


async def test_tokens_over_tls(tls_live: LiveEmulator) -> None:
    async with client(tls_live) as c:
        wrong = await c.get("/_emulator/stats", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.text.startswith("NotAuthenticated")
        bearer = await c.get("/_emulator/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200
        cadc = await c.get("/_emulator/stats", headers={"X-CADC-DelegationToken": TOKEN})
        assert cadc.status_code == 200


async def test_token_wins_over_certificate(
    tls_live: LiveEmulator, proxies: dict[str, Path]
) -> None:
    async with client(tls_live, proxies["alice"]) as c:
        r = await c.get("/_emulator/stats", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
@pytest.mark.parametrize(
    ("name", "alert"), [("expired", "CERTIFICATE_EXPIRED"), ("foreign", "UNKNOWN_CA")]
)
async def test_bad_certificate_fails_the_handshake(
    tls_live: LiveEmulator, proxies: dict[str, Path], name: str, alert: str, tls12: bool
) -> None:
    """Refused in the handshake with the TLS alert (TLS 1.3 clients see it on first read)."""
    ctx = tls_files(tls_live).client_context(proxies[name])
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    async with httpx2.AsyncClient(base_url=tls_live.url, verify=ctx, timeout=10) as c:
        with pytest.raises(httpx2.TransportError) as info:
            await c.get("/reg/resource-caps")
    assert alert in chain_text(info.value)


def test_restart_reuses_certificates(tmp_path: Path) -> None:
    root = tmp_path / "emu"
    first = ensure_server_tls(root)
    before = {p.name: p.read_bytes() for p in first.directory.glob("*.pem")}
    again = ensure_server_tls(root)
    assert {p.name: p.read_bytes() for p in again.directory.glob("*.pem")} == before
    # A new host name is covered by a new server cert from the same CA.
    ensure_server_tls(root, ["emu.localdomain"])
    assert (first.directory / "ca.pem").read_bytes() == before["ca.pem"]
    assert (first.directory / "server.pem").read_bytes() != before["server.pem"]


def test_proxy_pem_shape(tmp_path: Path) -> None:
    cert = mint_proxy(tmp_path / "emu", "alice", tmp_path / "p.pem", suffix="abc")
    text = (tmp_path / "p.pem").read_text()
    assert stat.S_IMODE((tmp_path / "p.pem").stat().st_mode) == 0o600
    assert text.index("BEGIN CERTIFICATE") < text.index("BEGIN RSA PRIVATE KEY")
    assert cert.subject.rfc4514_string() == "CN=alice_abc,OU=cadc,O=hia,C=ca"
    remaining = cert.not_valid_after_utc - datetime.now(UTC)
    assert PROXY_LIFETIME - timedelta(minutes=1) < remaining <= PROXY_LIFETIME


def test_proxy_command(tmp_path: Path) -> None:
    out = tmp_path / "ssl" / "cadcproxy.pem"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "canfarfs.emulator.tls",
            "proxy",
            "--root",
            str(tmp_path / "emu"),
            "--user",
            "alice",
            "--days",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert proc.stdout.startswith(f"{out}: CN=alice_")
    assert "PRIVATE KEY" not in proc.stdout
    assert out.exists()


def _tls_hello_to(port: int) -> float:
    """Seconds until a TLS client talking to a plain-HTTP port gives up (bounded at 20 s)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    start = time.monotonic()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=20) as sock,
        pytest.raises(ssl.SSLError),
    ):
        ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    return time.monotonic() - start


async def test_tls_hello_on_plain_port_is_refused_promptly(emulator: Emulator) -> None:
    """cadcutils probes https on the plain port with no timeout (vospace-api.md §10.1)."""
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_emulator, emulator)
        assert url.startswith("http://")
        elapsed = await trio.to_thread.run_sync(_tls_hello_to, int(url.rsplit(":", 1)[1]))
        nursery.cancel_scope.cancel()
    assert elapsed < 2


async def test_serve_emulator_tls_in_process(emulator: Emulator, tmp_path: Path) -> None:
    """The library entry point: ``serve_emulator(tls=True)`` reports an https URL."""
    mint_proxy(emulator.config.root, USER, tmp_path / "alice.pem")
    async with trio.open_nursery() as nursery:
        url = await nursery.start(
            lambda task_status: serve_emulator(emulator, tls=True, task_status=task_status)
        )
        assert url.startswith("https://127.0.0.1:")
        ctx = ServerTLS(emulator.config.root / "tls").client_context(tmp_path / "alice.pem")
        async with httpx2.AsyncClient(base_url=url, verify=ctx, timeout=10) as c:
            assert (await c.get("/_emulator/stats")).status_code == 200
        nursery.cancel_scope.cancel()
