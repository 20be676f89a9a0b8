"""The ``canfarfs`` command line: mount, umount, status, sync, warmup, emulator — and the
mount-helper form ``canfarfs SOURCE MOUNTPOINT -o OPTIONS`` that mount(8) runs for
``-t fuse.canfarfs`` and fstab lines (see :mod:`canfarfs.mountopts`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from canfarfs import __version__
from canfarfs.usage import UsageError, parse_size


def build_parser() -> argparse.ArgumentParser:
    from canfarfs.mountopts import OPTIONS_HELP, SOURCES

    parser = argparse.ArgumentParser(
        prog="canfarfs",
        usage="canfarfs [-h] [--version] COMMAND ...\n"
        "       canfarfs SOURCE MOUNTPOINT [-o OPTIONS] [mount flags]",
        description="CANFAR storage and sessions as a file system, and a local platform.",
        epilog=f"The second form is what mount -t fuse.canfarfs and fstab lines run: SOURCE is "
        f"{SOURCES}, and -o takes the mount options (canfarfs mount --help). "
        "See docs/system-mounts.md.",
    )
    parser.add_argument("--version", action="version", version=f"canfarfs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        # Its own usage line: the default prefix would be the top-level usage's two lines.
        return sub.add_parser(name, prog=f"canfarfs {name}", help=help_text)

    emu = command("emulator", "serve arc, vault and skaha locally (the local platform)")
    emu.add_argument("--root", required=True, type=Path, help="data directory (kept across runs)")
    emu.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    emu.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    tok = emu.add_mutually_exclusive_group()
    tok.add_argument("--token", help="bearer token to accept (default: generate one)")
    tok.add_argument("--token-file", type=Path, help="file holding the token to accept")
    emu.add_argument("--user", help="identity the token stands for (default: login name)")
    emu.add_argument("--group", action="append", default=[], help="a group the user is in")
    emu.add_argument("--quota", type=parse_size, default="10G", help="allocation quota (10G)")
    emu.add_argument("--tls", action="store_true", help="serve HTTPS with a generated cert")

    mnt = command("mount", "mount arc, vault and sessions at MOUNTPOINT")
    mnt.add_argument("mountpoint", type=Path)
    mnt.add_argument(
        "--local",
        type=Path,
        metavar="DATA_DIR",
        help="run the bundled local platform with its data in DATA_DIR",
    )
    mnt.add_argument("--arc-url", help="arc service base URL")
    mnt.add_argument("--vault-url", help="vault service base URL")
    mnt.add_argument("--skaha-url", help="skaha service URL (with /v1)")
    mnt.add_argument("--token-file", type=Path, help="file holding a bearer token")
    mnt.add_argument(
        "--cert-file",
        type=Path,
        metavar="PEM",
        help="X.509 proxy certificate (certificate and key in one PEM)",
    )
    mnt.add_argument(
        "--ca-file",
        type=Path,
        metavar="PEM",
        help="trust only the CA certificates in PEM for HTTPS (default: the system's trusted CAs)",
    )
    mnt.add_argument("--foreground", "-f", action="store_true", help="stay attached")
    mnt.add_argument("--read-only", action="store_true", help="refuse every change (EROFS)")
    mnt.add_argument("--cache-dir", type=Path, help="cache and staging directory")
    mnt.add_argument("--cache-size", type=parse_size, default="10G", help="disk cache budget (10G)")
    mnt.add_argument(
        "--memory",
        type=parse_size,
        default="48M",
        help="file bytes held in memory: read-ahead not yet read or cached (48M)",
    )
    mnt.add_argument(
        "--timeout", type=float, default=30.0, help="seconds any network wait may take (30)"
    )
    mnt.add_argument(
        "--meta-ttl",
        type=float,
        default=5.0,
        help="seconds cached listings and attributes stay fresh (5)",
    )
    mnt.add_argument(
        "--strict-modes",
        action="store_true",
        help="refuse (EPERM) modes a copy asks for that VOSpace cannot "
        "express, instead of recording them (docs/semantics.md)",
    )
    mnt.add_argument(
        "--offline",
        action="store_true",
        help="start offline: serve the cache and the last known listings without asking "
        "the services; online again as soon as they answer (docs/semantics.md)",
    )
    mnt.add_argument(
        "--writeback",
        action="store_true",
        help="close() returns once the bytes are staged locally; uploads go on in the "
        "background (fsync, canfarfs sync and umount wait for them; docs/semantics.md)",
    )
    mnt.add_argument(
        "--writeback-delay",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="with --writeback, upload a file once it has been left alone this long "
        "(5; 0 uploads at once)",
    )
    mnt.add_argument("--debug", action="store_true", help="verbose log")
    mnt.add_argument(
        "--nonempty",
        action="store_true",
        help="allow a mount point that is not empty (its files are hidden)",
    )
    mnt.add_argument(
        "-o", dest="fuse_options", action="append", default=[], metavar="OPTIONS", help=OPTIONS_HELP
    )
    mnt.add_argument("--notify-fd", type=int, help=argparse.SUPPRESS)

    umnt = command("umount", "unmount (after every upload is on the server)")
    umnt.add_argument("mountpoint", type=Path)
    umnt.add_argument(
        "--force",
        action="store_true",
        help="unmount even with open files or failing uploads (lazy unmount)",
    )

    st = command("status", "connectivity, pending uploads and cache use")
    st.add_argument("mountpoint", type=Path)
    st.add_argument("--json", action="store_true", help="print the raw JSON document")

    sy = command("sync", "wait, with progress, until every upload is durable")
    sy.add_argument("mountpoint", type=Path)

    wu = command("warmup", "fetch files and trees into the mount's cache (--pin: keep them)")
    wu.add_argument("paths", nargs="+", metavar="PATH", help="files or directories in a mount")
    what = wu.add_mutually_exclusive_group()
    what.add_argument(
        "--pin",
        action="store_true",
        help="keep them cached through eviction and remounts (docs/semantics.md)",
    )
    what.add_argument(
        "--evict", action="store_true", help="drop them from the cache, and unpin them"
    )
    return parser


def _cmd_emulator(args: argparse.Namespace) -> int:
    import logging

    from canfarfs.emulator.config import load_config
    from canfarfs.emulator.server import run_emulator_command

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("hypercorn", "hypercorn.error", "hypercorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, not {args.port}")
    if args.token_file is not None and not args.token_file.is_file():
        raise UsageError(f"token file not found: {args.token_file}")
    try:
        config = load_config(
            args.root,
            user=args.user,
            token=args.token,
            token_file=args.token_file,
            quota=args.quota,
            groups=frozenset(args.group),
        )
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    return run_emulator_command(config, args.host, args.port, tls=args.tls)


def main(argv: list[str] | None = None) -> int:
    from canfarfs.mountopts import helper_argv

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = helper_argv(argv)
    except UsageError as exc:
        print(f"canfarfs: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    args.argv = argv  # what a background mount passes on to its daemon
    try:
        if args.command == "emulator":
            return _cmd_emulator(args)
        if args.command == "mount":
            from canfarfs.mountcmd import cmd_mount

            return cmd_mount(args)
        if args.command == "umount":
            from canfarfs.mountcmd import cmd_umount

            return cmd_umount(args)
        if args.command == "warmup":
            from canfarfs.warmupcmd import cmd_warmup

            return cmd_warmup(args)
        if args.command in ("status", "sync"):
            from canfarfs.statuscmd import cmd_status, cmd_sync

            return cmd_status(args) if args.command == "status" else cmd_sync(args)
    except UsageError as exc:
        print(f"canfarfs: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"canfarfs: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""),
            file=sys.stderr,
        )
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
