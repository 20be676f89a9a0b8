"""Certificates for ``canfarfs emulator --tls``: a local CA, the server cert, proxy certs.

Everything lives in ``<root>/tls/`` (0700): ``ca.pem`` (trust this), ``ca-key.pem``,
``server.pem`` and ``server-key.pem``. Files are reused across restarts while they are
valid; keys are 0600. :func:`mint_proxy` writes a CADC-style proxy PEM (certificate and
key in one file) signed by the emulator CA, which the emulator accepts as a client
certificate. ``python -m canfarfs.emulator.tls proxy --root DIR --user NAME --out FILE``
does the same from a shell (see docs/emulator-auth.md).
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import os
import secrets
import ssl
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TLS_DIR = "tls"
CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"
DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")

CA_LIFETIME = timedelta(days=3650)
SERVER_LIFETIME = timedelta(days=365)
PROXY_LIFETIME = timedelta(days=30)
#: Certificates closer than this to their end are replaced at start-up.
RENEW_MARGIN = timedelta(days=2)

CaKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class ServerTLS:
    """The files the TLS listener uses; ``ca`` is what clients should trust."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / CA_CERT

    @property
    def cert(self) -> Path:
        return self.directory / SERVER_CERT

    @property
    def key(self) -> Path:
        return self.directory / SERVER_KEY

    def server_context(self) -> ssl.SSLContext:
        """TLS ≥ 1.2, HTTP/1.1, client certificates optional but verified against ``ca``."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def client_context(self, certfile: Path | None = None) -> ssl.SSLContext:
        """A client context trusting the emulator CA, optionally presenting ``certfile``."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if certfile is not None:
            ctx.load_cert_chain(certfile)
        return ctx


def tls_dir(root: Path) -> Path:
    """``<root>/tls``, created 0700."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    d = root / TLS_DIR
    d.mkdir(exist_ok=True, mode=0o700)
    return d


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise generation between processes sharing one root."""
    fd = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _now() -> datetime:
    return datetime.now(UTC)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _fresh(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - RENEW_MARGIN > _now() >= cert.not_valid_before_utc


def _load_ca(d: Path) -> tuple[x509.Certificate, CaKey] | None:
    """The stored CA if it is readable, consistent and not about to expire."""
    try:
        cert = x509.load_pem_x509_certificate((d / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((d / CA_KEY).read_bytes(), None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _fresh(cert):
        return None
    if cert.public_key() != key.public_key():
        return None
    return cert, key


def _builder(
    subject: x509.Name, issuer: x509.Name, public: object, not_before: datetime, not_after: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        # ``public`` is any key type the CA may sign; cryptography's stub wants a union
        # we only build from generated keys, so the narrowing is safe.
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _new_ca() -> tuple[x509.Certificate, CaKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "canfarfs emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"canfarfs emulator CA {secrets.token_hex(4)}"),
        ]
    )
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        _builder(name, name, key.public_key(), now - timedelta(minutes=5), now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def ensure_ca(root: Path) -> tuple[x509.Certificate, CaKey]:
    """The emulator CA under ``<root>/tls``, generated on first use."""
    d = tls_dir(root)
    with _locked(d):
        found = _load_ca(d)
        if found is not None:
            return found
        cert, key = _new_ca()
        _write_atomic(d / CA_KEY, _key_pem(key), 0o600)
        _write_atomic(d / CA_CERT, _cert_pem(cert), 0o644)
        return cert, key


def _issued(
    ca: x509.Certificate,
    ca_key: CaKey,
    subject: x509.Name,
    public: object,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    """A leaf builder signed-to-be by the CA, with the extensions strict verifiers want."""
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return (
        _builder(subject, ca.subject, public, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(aki, critical=False)
        # Same narrowing as in _builder: ``public`` comes from a key we generated.
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public),  # type: ignore[arg-type]
            critical=False,
        )
    )


def _leaf_usage(*, key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _server_ok(d: Path, ca: x509.Certificate, hosts: Sequence[str]) -> bool:
    """Whether the stored server cert is valid, issued by ``ca``, and covers ``hosts``."""
    try:
        cert = x509.load_pem_x509_certificate((d / SERVER_CERT).read_bytes())
        key = serialization.load_pem_private_key((d / SERVER_KEY).read_bytes(), None)
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    wanted = set(_san(hosts))
    return _fresh(cert) and cert.public_key() == key.public_key() and wanted <= set(san)


def _new_server(ca: x509.Certificate, ca_key: CaKey, hosts: Sequence[str]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "canfarfs emulator")])
    cert = (
        _issued(
            ca, ca_key, subject, key.public_key(), now - timedelta(minutes=5), now + SERVER_LIFETIME
        )
        .add_extension(_leaf_usage(key_encipherment=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hosts), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _cert_pem(cert), _key_pem(key)


def ensure_server_tls(root: Path, hosts: Sequence[str] = ()) -> ServerTLS:
    """CA and server certificate for loopback (plus ``hosts``), reused while valid."""
    ca, ca_key = ensure_ca(root)
    d = tls_dir(root)
    names = [*DEFAULT_HOSTS, *(h for h in hosts if h not in ("0.0.0.0", "::", ""))]  # noqa: S104
    with _locked(d):
        if not _server_ok(d, ca, names):
            cert, key = _new_server(ca, ca_key, names)
            _write_atomic(d / SERVER_KEY, key, 0o600)
            _write_atomic(d / SERVER_CERT, cert, 0o644)
    return ServerTLS(d)


def proxy_subject(user: str, suffix: str) -> x509.Name:
    """``CN=<user>_<suffix>,OU=cadc,O=hia,C=ca`` (RFC 4514 order), as CADC proxies carry."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "ca"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hia"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "cadc"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{user}_{suffix}"),
        ]
    )


def mint_proxy(
    root: Path,
    user: str,
    dest: Path,
    *,
    lifetime: timedelta = PROXY_LIFETIME,
    not_after: datetime | None = None,
    suffix: str | None = None,
) -> x509.Certificate:
    """Write a proxy PEM (certificate, then RSA key) for ``user`` to ``dest`` (0600).

    Valid for ``lifetime`` from now, or for ``lifetime`` up to ``not_after`` (a past
    ``not_after`` gives an already expired certificate, for tests).
    """
    ca, ca_key = ensure_ca(root)
    end = not_after or _now() + lifetime
    start = min(end - lifetime, _now() - timedelta(minutes=5))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = proxy_subject(user, suffix or secrets.token_hex(3))
    cert = (
        _issued(ca, ca_key, subject, key.public_key(), start, end)
        .add_extension(_leaf_usage(key_encipherment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = _cert_pem(cert) + _key_pem(key, serialization.PrivateFormat.TraditionalOpenSSL)
    _write_atomic(dest, pem, 0o600)
    return cert


def main(argv: list[str] | None = None) -> int:
    """``python -m canfarfs.emulator.tls proxy``: mint a client proxy certificate."""
    parser = argparse.ArgumentParser(prog="python -m canfarfs.emulator.tls")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("proxy", help="write a CADC-style proxy PEM signed by the emulator CA")
    p.add_argument("--root", type=Path, required=True, help="the emulator's --root")
    p.add_argument("--user", required=True, help="user name for the certificate's CN")
    p.add_argument("--days", type=float, default=30.0, help="validity in days (default 30)")
    p.add_argument("--out", type=Path, default=Path.home() / ".ssl" / "cadcproxy.pem")
    args = parser.parse_args(argv)
    cert = mint_proxy(args.root, args.user, args.out, lifetime=timedelta(days=args.days))
    print(
        f"{args.out}: {cert.subject.rfc4514_string()}, "
        f"valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
