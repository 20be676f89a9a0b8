"""What a mount authenticates with, as ``canfarfs status`` shows it (never the secret).

The daemon keeps one :class:`AuthInfo`: the kind of credential and where it came from,
the certificate (its subject and expiry are read from the file at every status, so a
renewed proxy shows), the refreshing token's expiry, and the last failure to get a
token (an expired login shows here as well as in the log and as EACCES).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from canfarfs import errors

log = logging.getLogger(__name__)

KINDS = ("local", "token", "oidc", "certificate", "none")


@dataclass
class AuthInfo:
    #: local (the bundled platform's token), token (a fixed bearer token), oidc (the
    #: canfar login's token, refreshed), certificate (an X.509 proxy), none.
    kind: str = "none"
    #: Where it came from: a flag, an environment variable, the canfar configuration.
    source: str = ""
    cert_file: str | None = None
    #: The refreshing token's expiry (epoch seconds), read live from this getter.
    token_expiry: Callable[[], float | None] | None = None
    last_error: str | None = None
    failed_at: float | None = None

    def wrap(self, provider: Callable[[], Awaitable[str]]) -> Callable[[], Awaitable[str]]:
        """The token provider, recording (and logging once) each failure and recovery."""

        async def get() -> str:
            try:
                token = await provider()
            except errors.CanfarfsError as exc:
                if self.last_error != str(exc):
                    log.error("authentication failed: %s", exc)
                self.last_error, self.failed_at = str(exc), time.time()
                raise
            if self.last_error is not None:
                log.info("authentication works again")
                self.last_error = self.failed_at = None
            return token

        return get

    def describe(self) -> dict[str, Any]:
        """JSON-ready: kind, source, state (ok, failing, expired), expiry, subject."""
        doc: dict[str, Any] = {
            "kind": self.kind,
            "source": self.source,
            "state": "ok",
            "expires": None,
            "last_error": self.last_error,
        }
        if self.kind == "certificate" and self.cert_file:
            doc["file"] = self.cert_file
            try:
                subject, expires = certificate_facts(self.cert_file)
            except (OSError, ValueError) as exc:
                doc.update(state="failing", last_error=f"cannot read {self.cert_file}: {exc}")
                return doc
            doc.update(subject=subject, expires=expires)
            if expires < time.time():
                doc["state"] = "expired"
        elif self.token_expiry is not None:
            until = self.token_expiry()
            doc["expires"] = until if until is not None and until != float("inf") else None
        if self.last_error is not None:
            doc["state"] = "failing"
            doc["failed_at"] = self.failed_at
        return doc


def certificate_facts(path: str) -> tuple[str, float]:
    """(subject, notAfter as epoch seconds) of the first certificate in a PEM."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    return cert.subject.rfc4514_string(), cert.not_valid_after_utc.timestamp()


def describe_line(auth: dict[str, Any], now: float | None = None) -> str:
    """One human line for ``canfarfs status``: what, from where, until when."""
    now = time.time() if now is None else now
    what = {
        "local": "the local platform's token",
        "token": "a bearer token",
        "oidc": "an OIDC access token (refreshed as it expires)",
        "certificate": "an X.509 certificate",
        "none": "no credentials (anonymous)",
    }.get(auth.get("kind", ""), str(auth.get("kind")))
    if auth.get("subject"):
        what += f" {auth['subject']}"
    if auth.get("source"):
        what += f" from {auth['source']}"
    expires = auth.get("expires")
    if expires is not None:
        when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        left = expires - now
        what += (
            f", valid until {when} ({_duration(left)} left)" if left > 0 else f", EXPIRED at {when}"
        )
    if auth.get("last_error"):
        what += f"; failing: {auth['last_error']}"
    return what


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} s"
