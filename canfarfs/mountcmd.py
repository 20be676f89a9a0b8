"""``canfarfs mount`` and ``canfarfs umount``: checks, daemonising, clear errors."""

from __future__ import annotations

import argparse
import logging
import math
import os
import select
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import trio

from canfarfs import errors
from canfarfs.authinfo import AuthInfo
from canfarfs.daemon import MountOptions, run_mount, tls_verify
from canfarfs.mountopts import apply_mount_options
from canfarfs.usage import UsageError

READY_TIMEOUT = 60.0


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    path = Path(base) / "canfarfs"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def default_cache_dir(mountpoint: Path) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    name = str(mountpoint.resolve()).strip("/").replace("/", "_") or "root"
    return Path(base) / "canfarfs" / name


def check_mountpoint(mountpoint: Path, nonempty: bool = False) -> None:
    if str(mountpoint).startswith("/dev/fd/"):
        raise UsageError(
            "the mount point is a file descriptor (mount.fuse3's "
            "drop_privileges option): canfarfs needs the directory itself; "
            "use setuid=USER instead"
        )
    if not mountpoint.exists():
        raise UsageError(f"mount point {mountpoint} does not exist (mkdir it first)")
    try:
        is_mount = os.path.ismount(mountpoint)
    except OSError:
        is_mount = True
    if is_mount or _in_mounts(mountpoint):
        raise UsageError(f"{mountpoint} is already mounted (canfarfs umount {mountpoint})")
    if not mountpoint.is_dir():
        raise UsageError(f"mount point {mountpoint} is not a directory")
    if any(mountpoint.iterdir()) and not nonempty:
        raise UsageError(
            f"mount point {mountpoint} is not empty (-o nonempty mounts over its files)"
        )


def _in_mounts(mountpoint: Path) -> bool:
    target = str(mountpoint.absolute())
    try:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == target for line in f if len(line.split()) > 1)
    except OSError:
        return False


def setup_logging(debug: bool, foreground: bool) -> Path:
    log_file = state_dir() / "canfarfs.log"
    handlers: list[logging.Handler] = [logging.FileHandler(log_file)]
    if foreground:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        handlers=handlers,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    for noisy in ("httpx2", "httpcore", "httpcore2", "hpack", "hypercorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return log_file


def options_from(args: argparse.Namespace) -> MountOptions:
    token, auth = None, AuthInfo()
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read token file {args.token_file}: {exc.strerror}") from None
        if not token:
            raise UsageError(f"token file {args.token_file} is empty")
        auth = AuthInfo(kind="token", source=f"--token-file {args.token_file}")
    elif os.environ.get("CANFARFS_TOKEN"):
        token = os.environ["CANFARFS_TOKEN"]
        auth = AuthInfo(kind="token", source="CANFARFS_TOKEN")
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if not 0 <= args.writeback_delay < math.inf:
        raise UsageError("--writeback-delay must be zero or a positive number of seconds")
    cert_file = None
    if args.cert_file is not None:
        cert_file = str(args.cert_file)
        check_certificate(cert_file, "the certificate given with --cert-file")
        if token is None:
            auth = AuthInfo(kind="certificate", source="--cert-file", cert_file=cert_file)
    if args.ca_file is not None:
        try:
            tls_verify(args.ca_file)
        except ssl.SSLError:  # (an OSError too: first)
            raise UsageError(
                f"cannot use --ca-file {args.ca_file}: no CA certificate in it (PEM expected)"
            ) from None
        except OSError as exc:
            raise UsageError(
                f"cannot use --ca-file {args.ca_file}: {exc.strerror or exc}"
            ) from None
    opts = MountOptions(
        mountpoint=args.mountpoint,
        local=args.local,
        arc_url=args.arc_url,
        vault_url=args.vault_url,
        skaha_url=args.skaha_url,
        token=token,
        cert_file=cert_file,
        ca_file=args.ca_file,
        auth=auth,
        read_only=args.read_only,
        strict_modes=args.strict_modes,
        writeback=args.writeback,
        writeback_delay=args.writeback_delay,
        offline=args.offline,
        debug=args.debug,
        cache_size=args.cache_size,
        memory=args.memory,
        cache_dir=args.cache_dir or default_cache_dir(args.mountpoint),
        fuse_options=args.fuse_options,
        meta_ttl=args.meta_ttl,
        timeout=args.timeout,
    )
    if args.local is None and not (args.arc_url and args.vault_url and (token or cert_file)):
        _from_canfar_login(opts)
    return opts


def check_certificate(path: str, what: str) -> float:
    """Refuse, in one line, a certificate that is missing, unusable or expired; its
    expiry (epoch seconds) otherwise."""
    from canfarfs.login import RELOGIN, cert_expiry

    if not Path(path).is_file():
        raise UsageError(f"{what}, {path}, does not exist")
    try:
        expiry = cert_expiry(path)
        ssl.create_default_context().load_cert_chain(path)  # the key is there and matches
    except (ValueError, ssl.SSLError):  # (SSLError is an OSError: first)
        raise UsageError(
            f"{path} is not a certificate with its key (a proxy PEM holds "
            "both, like the one cadc-get-cert writes)"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if expiry < time.time():
        raise UsageError(
            f"the certificate {path} expired; get a new one (cadc-get-cert, or {RELOGIN})"
        )
    return expiry


def _from_canfar_login(opts: MountOptions) -> None:
    """Fill what the flags left out from the canfar CLI's configuration."""
    from canfarfs.login import DEFAULT_CONFIG, check_credentials, load_login

    try:
        login = load_login(DEFAULT_CONFIG)
    except errors.CanfarfsError as exc:
        raise UsageError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the canfar configuration {DEFAULT_CONFIG}: {exc}") from None
    opts.arc_url = opts.arc_url or login.arc_url
    opts.vault_url = opts.vault_url or login.vault_url
    opts.skaha_url = opts.skaha_url or login.skaha_url
    if not (opts.arc_url and opts.vault_url):
        raise UsageError(
            "say where the storage is: --local DATA_DIR, --arc-url and "
            "--vault-url, or log in first with `canfar auth login`"
        )
    if opts.token is None and opts.cert_file is None:
        try:
            check_credentials(login)
        except errors.CanfarfsError as exc:
            raise UsageError(str(exc)) from None
        opts.token_provider = login.token
        opts.cert_file = login.cert_file
        if login.token is not None and os.environ.get("CANFAR_TOKEN"):
            opts.auth = AuthInfo(kind="token", source="CANFAR_TOKEN")
        elif login.token is not None:
            token = login.token
            if opts.ca_file is not None:
                token.verify = tls_verify(opts.ca_file)  # the refresh goes there too
            opts.auth = AuthInfo(
                kind="oidc", source=login.source, token_expiry=lambda: token.expires
            )
        else:
            source = "CANFAR_CERTIFICATE" if os.environ.get("CANFAR_CERTIFICATE") else login.source
            opts.auth = AuthInfo(kind="certificate", source=source, cert_file=login.cert_file)


def cmd_mount(args: argparse.Namespace) -> int:
    apply_mount_options(args)
    if not Path("/dev/fuse").exists():
        raise UsageError("/dev/fuse is missing: install fuse3 (apt-get install fuse3)")
    check_mountpoint(args.mountpoint, args.nonempty)
    opts = options_from(args)
    if not args.foreground:
        return _spawn_background(args)
    log_file = setup_logging(args.debug, foreground=args.notify_fd is None)
    notify = args.notify_fd

    def ready() -> None:
        if notify is not None:
            os.write(notify, b"ready\n")
            os.close(notify)
        else:
            sd_notify(f"READY=1\nSTATUS=mounted at {args.mountpoint}")

    opts.on_ready = ready
    try:
        trio.run(run_mount, opts)
    except errors.CanfarfsError as exc:
        logging.getLogger("canfarfs").error("%s", exc)
        if notify is not None:
            os.write(notify, f"error: {exc}\n".encode())
        print(f"canfarfs: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # pyfuse3.init failures (permissions, fusermount)
        logging.getLogger("canfarfs").error("mount failed: %s (log: %s)", exc, log_file)
        if notify is not None:
            os.write(notify, f"error: {exc}\n".encode())
        print(f"canfarfs: mount failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _spawn_background(args: argparse.Namespace) -> int:
    """Start the daemon detached and return once the mount answers, like sshfs."""
    read_fd, write_fd = os.pipe()
    argv = [
        sys.executable,
        "-m",
        "canfarfs",
        *args.argv,
        "--foreground",
        "--notify-fd",
        str(write_fd),
    ]
    log_file = state_dir() / "canfarfs.log"
    with open(log_file, "ab") as log:
        subprocess.Popen(
            argv,
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    os.close(write_fd)
    ready, _, _ = select.select([read_fd], [], [], READY_TIMEOUT)
    message = os.read(read_fd, 4096).decode().strip() if ready else ""
    os.close(read_fd)
    if message == "ready":
        return 0
    if message.startswith("error: "):
        print(f"canfarfs: {message[len('error: ') :]}", file=sys.stderr)
    else:
        print(f"canfarfs: the daemon did not start; see {log_file}", file=sys.stderr)
    return 1


def sd_notify(message: str) -> bool:
    """Tell systemd (a ``Type=notify`` unit running ``--foreground``) our state: the
    sd_notify(3) datagram to $NOTIFY_SOCKET. Without that variable, nothing happens."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not address.startswith(("/", "@")):
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(message.encode())
    except OSError as exc:
        logging.getLogger("canfarfs").warning("cannot notify systemd: %s", exc)
        return False
    return True


def _drain(mountpoint: Path) -> None:
    """Before unmounting: refuse with open files; upload whatever is pending."""
    from canfarfs.statuscmd import read_status, request_sync

    try:
        doc = read_status(mountpoint)
    except UsageError:
        return  # a dead daemon: nothing to wait for, fusermount clears the mount point
    if doc["open_files"]:
        raise UsageError(
            f"{mountpoint} has {doc['open_files']} open file(s); close them first, or use --force"
        )
    if doc["uploads"]:
        error = request_sync(mountpoint)
        if error is not None:
            left = ", ".join(u["name"] for u in read_status(mountpoint)["uploads"])
            raise UsageError(
                f"uploads still failing ({left}): {error.strerror}; the bytes "
                "stay in the cache and are retried on the next mount. Use "
                "--force to unmount anyway"
            )


def cmd_umount(args: argparse.Namespace) -> int:
    mountpoint: Path = args.mountpoint
    if not _in_mounts(mountpoint):
        raise UsageError(f"{mountpoint} is not mounted")
    if not args.force:
        _drain(mountpoint)
    flag = "-uz" if args.force else "-u"
    result = subprocess.run(
        ["fusermount3", flag, str(mountpoint.absolute())],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        text = result.stderr.strip()
        if "busy" in text.lower():
            raise UsageError(
                f"{mountpoint} is busy: files are still open (close them, or use --force)"
            )
        raise UsageError(text or f"fusermount3 {flag} failed")
    return 0
