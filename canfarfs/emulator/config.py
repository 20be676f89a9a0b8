"""Emulator configuration: identities, tokens, groups, quota, where data lives."""

from __future__ import annotations

import getpass
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_QUOTA = 10 * 1024**3
TOKEN_FILE_NAME = "token"  # noqa: S105 - a file name, not a secret
USERS_FILE_NAME = "users.json"


@dataclass(frozen=True)
class User:
    """An identity the emulator knows: its name, bearer token and group names."""

    name: str
    token: str
    groups: frozenset[str] = frozenset()


@dataclass
class EmulatorConfig:
    """Everything the emulator app needs; build it with :func:`load_config`."""

    root: Path
    user: User
    #: Further identities (for permission tests), from ``<root>/users.json``.
    others: list[User] = field(default_factory=list)
    quota: int = DEFAULT_QUOTA
    #: Where the generated token was written (None when given on the command line).
    token_file: Path | None = None
    #: Run headless sessions as local processes (off only in tests that need no process).
    run_sessions: bool = True

    @property
    def users(self) -> list[User]:
        return [self.user, *self.others]

    def user_for_token(self, token: str) -> User | None:
        """The identity a bearer token stands for, compared in constant time."""
        found = None
        for u in self.users:
            if secrets.compare_digest(u.token.encode(), token.encode()):
                found = u
        return found

    def user_named(self, name: str) -> User | None:
        return next((u for u in self.users if u.name == name), None)


def _private_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def load_config(
    root: Path,
    *,
    user: str | None = None,
    token: str | None = None,
    token_file: Path | None = None,
    quota: int = DEFAULT_QUOTA,
    groups: frozenset[str] = frozenset(),
) -> EmulatorConfig:
    """Resolve the identity and token; create ``root`` (0700) if needed.

    With neither ``token`` nor ``token_file`` a token is generated once and kept in
    ``<root>/token`` (0600), so a restart accepts the same token.
    """
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = user or getpass.getuser()
    written: Path | None = None
    if token is None and token_file is not None:
        token = token_file.read_text().strip()
        if not token:
            raise ValueError(f"token file {token_file} is empty")
    if token is None:
        written = root / TOKEN_FILE_NAME
        if written.exists():
            token = written.read_text().strip()
        if not token:
            token = secrets.token_urlsafe(32)
            _private_write(written, token + "\n")
    others: list[User] = []
    users_file = root / USERS_FILE_NAME
    if users_file.exists():
        data = json.loads(users_file.read_text())
        for uname, spec in data.get("users", {}).items():
            g = frozenset(spec.get("groups", []))
            if uname == name:
                groups = groups | g
                continue
            others.append(User(uname, spec["token"], g))
    return EmulatorConfig(
        root=root,
        user=User(name, token, groups),
        others=others,
        quota=quota,
        token_file=written,
    )


def add_user(root: Path, name: str, token: str, groups: list[str]) -> None:
    """Record another identity in ``<root>/users.json`` (read at start-up)."""
    users_file = root / USERS_FILE_NAME
    data = json.loads(users_file.read_text()) if users_file.exists() else {"users": {}}
    data["users"][name] = {"token": token, "groups": groups}
    _private_write(users_file, json.dumps(data, indent=2) + "\n")
