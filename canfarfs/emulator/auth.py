"""Who is calling: bearer token (also as X-CADC-DelegationToken) or an X.509 client cert."""

from __future__ import annotations

import re

from starlette.requests import HTTPConnection

from canfarfs.emulator.config import EmulatorConfig, User
from canfarfs.emulator.errors import not_authenticated

_CN = re.compile(r"(?:^|,)\s*CN=([^,]+)")


def cert_user_name(subject: str) -> str | None:
    """The user name in a certificate subject (the first CN, as CADC proxy certs carry)."""
    m = _CN.search(subject)
    if not m:
        return None
    cn = m.group(1).strip()
    # CADC proxy subjects look like "CN=alice_abc,OU=cadc,O=hia,C=ca": the name is
    # the part before the first underscore.
    return cn.split("_", 1)[0]


def identify(conn: HTTPConnection, config: EmulatorConfig) -> User | None:
    """The caller's identity, or None for an anonymous request.

    A credential that is present but wrong raises the 401 the services answer; a
    missing one is anonymous (each endpoint decides what anonymous may do).
    """
    token = None
    auth = conn.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise not_authenticated("unsupported authorization scheme")
        token = value.strip()
    elif conn.headers.get("x-cadc-delegationtoken"):
        token = conn.headers["x-cadc-delegationtoken"].strip()
    if token is not None:
        user = config.user_for_token(token)
        if user is None:
            raise not_authenticated()
        return user
    tls = conn.scope.get("extensions", {}).get("tls", {})
    subject = tls.get("client_cert_name") if isinstance(tls, dict) else None
    if subject:
        name = cert_user_name(subject)
        user = config.user_named(name) if name else None
        if user is None:
            raise not_authenticated(f"certificate subject not known: {subject}")
        return user
    return None
