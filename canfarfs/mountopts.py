"""The mount-helper form and ``-o`` options: ``canfarfs SOURCE MOUNTPOINT -o OPTIONS``.

``mount -t fuse.canfarfs SOURCE MOUNTPOINT`` (and an fstab line of that type) runs
``/sbin/mount.fuse3``, which runs ``canfarfs SOURCE MOUNTPOINT -o OPTIONS`` through
``/bin/sh`` — the form sshfs and rclone accept. :func:`helper_argv` turns it into
``canfarfs mount MOUNTPOINT …``; :func:`apply_mount_options` then sorts every ``-o``
option into a canfarfs setting, a FUSE mount option, or one that only mount(8), fstab or
systemd care about (ignored). Anything else is refused with one line.

docs/system-mounts.md describes both, and what mount(8) and mount.fuse3 add or strip.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from canfarfs.usage import UsageError, parse_size

COMMANDS = frozenset({"emulator", "mount", "umount", "status", "sync", "warmup"})
SOURCES = "canfar, local:DATA_DIR or https://HOST"


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be a positive number of seconds, not {text!r}")
    return value


def _delay(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:
        raise ValueError(f"must be zero or a positive number of seconds, not {text!r}")
    return value


#: ``-o NAME=VALUE`` settings: NAME -> (attribute of the mount arguments, conversion).
#: Each is the same as the ``--name-with-dashes VALUE`` flag.
VALUE_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "arc_url": ("arc_url", str),
    "vault_url": ("vault_url", str),
    "skaha_url": ("skaha_url", str),
    "token_file": ("token_file", Path),
    "cert_file": ("cert_file", Path),
    "ca_file": ("ca_file", Path),
    "cache_dir": ("cache_dir", Path),
    "cache_size": ("cache_size", _size),
    "memory": ("memory", _size),
    "timeout": ("timeout", _seconds),
    "meta_ttl": ("meta_ttl", float),
    "writeback_delay": ("writeback_delay", _delay),
}
#: ``-o NAME`` switches: NAME -> attribute set to True.
FLAG_OPTIONS = {
    "foreground": "foreground",
    "debug": "debug",
    "read_only": "read_only",
    "ro": "read_only",  # the FUSE "ro" is added too (daemon.fuse_options)
    "nonempty": "nonempty",  # libfuse 3 has no such option; canfarfs checks emptiness
    "strict_modes": "strict_modes",
    "writeback": "writeback",
    "offline": "offline",
}
#: Passed to FUSE as given (what libfuse 3.14's low-level mount accepts).
FUSE_FLAGS = frozenset(
    {
        "rw",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "exec",
        "noexec",
        "async",
        "sync",
        "dirsync",
        "atime",
        "noatime",
        "allow_other",
        "allow_root",
        "auto_unmount",
        "default_permissions",
    }
)
FUSE_VALUES = frozenset({"fsname", "subtype", "max_read"})
#: For mount(8), fstab, systemd or mount.fuse3 only; ignored when they reach canfarfs.
HELPER_FLAGS = frozenset(
    {
        "defaults",
        "auto",
        "noauto",
        "nofail",
        "_netdev",
        "user",
        "nouser",
        "users",
        "owner",
        "group",
        "nobootwait",
    }
)
HELPER_VALUES = frozenset({"user", "comment"})
HELPER_PREFIXES = ("x-", "X-")
#: Access-time flags libfuse 3.14 does not take; canfarfs keeps no access times anyway.
NO_EFFECT = frozenset(
    {
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
        "lazytime",
        "nolazytime",
        "diratime",
        "nodiratime",
    }
)


def source_args(source: str) -> list[str]:
    """The ``canfarfs mount`` flags a SOURCE stands for."""
    if source == "canfar":
        return []  # the canfar CLI's login: active server, its URLs and credentials
    if source.startswith("local:"):
        data = source[len("local:") :]
        if not data:
            raise UsageError("source local: needs a data directory (local:/path/to/data)")
        return ["--local", os.path.abspath(os.path.expanduser(data))]
    if source.startswith(("https://", "http://")):
        base = source.rstrip("/")
        try:
            host = urlsplit(base).hostname
        except ValueError:
            host = None
        if not host:
            raise UsageError(f"source {source!r} has no host")
        return [
            "--arc-url",
            f"{base}/arc",
            "--vault-url",
            f"{base}/vault",
            "--skaha-url",
            f"{base}/skaha/v1",
        ]
    raise UsageError(f"unknown source {source!r}: use {SOURCES} (or a command: canfarfs --help)")


def helper_argv(argv: list[str]) -> list[str]:
    """``SOURCE MOUNTPOINT [options]`` -> ``mount MOUNTPOINT [source flags] [options]``;
    any other command line is returned unchanged."""
    if not argv or argv[0].startswith("-") or argv[0] in COMMANDS:
        return argv
    if len(argv) < 2 or argv[1].startswith("-"):
        raise UsageError(
            f"{argv[0]!r} is not a command; to mount, say "
            "canfarfs SOURCE MOUNTPOINT [-o OPTIONS] (see canfarfs --help)"
        )
    source, mountpoint, rest = argv[0], argv[1], argv[2:]
    return ["mount", mountpoint, *source_args(source), *rest]


def split_options(values: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``-o`` values (comma-separated, repeatable) -> (canfarfs settings, FUSE options).
    Raises UsageError, one line, for an option nobody takes or a bad value."""
    settings: dict[str, Any] = {}
    fuse: list[str] = []
    for value in values:
        for option in (o.strip() for o in value.split(",")):
            if not option:
                continue
            name, eq, arg = option.partition("=")
            if name in VALUE_OPTIONS and eq:
                attr, convert = VALUE_OPTIONS[name]
                try:
                    settings[attr] = convert(arg)
                except ValueError as exc:
                    raise UsageError(f"-o {option}: {exc}") from None
            elif name in VALUE_OPTIONS:
                raise UsageError(f"-o {name} needs a value: -o {name}=…")
            elif name in FLAG_OPTIONS and not eq:
                settings[FLAG_OPTIONS[name]] = True
            elif (name in FUSE_FLAGS and not eq) or (name in FUSE_VALUES and eq and arg):
                fuse.append(option)
            elif (
                (name in HELPER_FLAGS and not eq)
                or (name in HELPER_VALUES and eq)
                or name.startswith(HELPER_PREFIXES)
                or (name in NO_EFFECT and not eq)
            ):
                continue
            elif name in ("setuid", "drop_privileges"):
                raise UsageError(
                    f"-o {option} is for mount.fuse3: use it through mount -t "
                    "fuse.canfarfs or fstab (docs/system-mounts.md)"
                )
            else:
                raise UsageError(
                    f"unknown mount option -o {option} (see the -o list in canfarfs mount --help)"
                )
    if os.geteuid() != 0:
        # mount.fuse3 adds dev,suid; fusermount3 refuses them to users (and defaults to
        # nodev,nosuid), so leave them out rather than have it complain.
        fuse = [o for o in fuse if o not in ("dev", "suid")]
    return settings, fuse


def apply_mount_options(args: argparse.Namespace) -> None:
    """Fold ``args.fuse_options`` into the mount arguments: canfarfs settings override
    the flags' values; ``args.fuse_options`` keeps only what goes to FUSE."""
    settings, fuse = split_options(args.fuse_options)
    for attr, value in settings.items():
        setattr(args, attr, value)
    args.fuse_options = fuse


OPTIONS_HELP = (
    "mount option, repeatable and comma-separated: canfarfs's own ("
    + ", ".join([f"{n}=" for n in VALUE_OPTIONS] + sorted(FLAG_OPTIONS))
    + "), FUSE's ("
    + ", ".join(sorted(FUSE_FLAGS) + [f"{n}=" for n in sorted(FUSE_VALUES)])
    + "); fstab/systemd-only ones (_netdev, noauto, nofail, x-systemd.*, …) are ignored"
)
