"""The mount daemon: one trio process, one nursery owning every task, orderly teardown.

Start-up: (with ``--local``) serve the emulator on loopback inside this process, build the
clients, recover staged bytes from an earlier run, mount, signal readiness. Teardown: on
unmount or SIGINT/SIGTERM, leave the FUSE loop, close the clients, stop the emulator.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import functools
import getpass
import logging
import os
import resource
import signal
import ssl
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from canfarfs import errors
from canfarfs.authinfo import AuthInfo
from canfarfs.bulk import BulkGetter, tls_context
from canfarfs.fs.arcfiles import StorageArcFiles
from canfarfs.fs.fuse_ops import CanfarOps
from canfarfs.fs.membudget import DEFAULT_BYTES as DEFAULT_MEMORY
from canfarfs.fs.offline import watch
from canfarfs.fs.storage import Storage, StorageConfig
from canfarfs.fs.writeback import DELAY as WRITEBACK_DELAY
from canfarfs.net import HTTP, Credentials, Timeouts, make_client
from canfarfs.sessions.tree import SessionsTree
from canfarfs.skaha.client import SkahaClient
from canfarfs.tasks import spawn
from canfarfs.vospace.client import VOSpaceClient

log = logging.getLogger(__name__)


@dataclass
class MountOptions:
    """Everything ``canfarfs mount`` was told (see docs/configuration.md)."""

    mountpoint: Path
    cache_dir: Path
    local: Path | None = None
    arc_url: str | None = None
    vault_url: str | None = None
    skaha_url: str | None = None
    token: str | None = None
    #: A refreshing token (from the canfar login) or a client certificate, if no token.
    token_provider: Callable[[], Awaitable[str]] | None = field(default=None, repr=False)
    cert_file: str | None = None
    #: Trust only these CA certificates for HTTPS (``--ca-file``); None: the system's.
    ca_file: Path | None = None
    #: What ``canfarfs status`` says about the credentials.
    auth: AuthInfo = field(default_factory=AuthInfo)
    read_only: bool = False
    #: Refuse (EPERM) the modes copies ask for that VOSpace cannot express, instead of
    #: recording them (``--strict-modes``).
    strict_modes: bool = False
    #: close() returns once staged; uploads in the background (``--writeback``).
    writeback: bool = False
    #: Seconds a file is left alone before its upload starts (``--writeback-delay``).
    writeback_delay: float = WRITEBACK_DELAY
    #: Start offline, without asking the services (``--offline``).
    offline: bool = False
    debug: bool = False
    cache_size: int = 10 * 1024**3
    #: File bytes held in memory at once (``--memory``).
    memory: int = DEFAULT_MEMORY
    fuse_options: list[str] = field(default_factory=list)
    meta_ttl: float = 5.0
    timeout: float = 30.0
    #: The account whose allocations ``df`` reports (CANFARFS_USER, else the login name).
    user: str = field(default_factory=lambda: os.environ.get("CANFARFS_USER") or getpass.getuser())
    #: Called once the file system answers (the CLI uses it to release the parent).
    on_ready: Callable[[], None] | None = None
    #: Private-registry credentials for specs without ``registry:`` (the canfar client's
    #: CANFAR_REGISTRY__USERNAME / CANFAR_REGISTRY__SECRET); never logged.
    registry: tuple[str, str] | None = field(
        default_factory=lambda: registry_from_env(os.environ), repr=False
    )


def registry_from_env(env: Mapping[str, str]) -> tuple[str, str] | None:
    user, secret = env.get("CANFAR_REGISTRY__USERNAME"), env.get("CANFAR_REGISTRY__SECRET")
    return (user, secret) if user and secret else None


def lock_cache_dir(cache_dir: Path) -> int:
    """Take an exclusive lock on the cache directory; a second daemon is refused."""
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(cache_dir, 0o700)
    fd = os.open(cache_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise errors.CanfarfsError(
            f"another canfarfs daemon is using the cache directory {cache_dir}; "
            "give this mount its own --cache-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def fuse_options(opts: MountOptions) -> set[str]:
    """The FUSE options: ours, then the user's (already checked by canfarfs.mountopts);
    a user's ``fsname=`` or ``subtype=`` replaces ours."""
    options = set(pyfuse3.default_options) | {"default_permissions"}
    given = [o.strip() for item in opts.fuse_options for o in item.split(",") if o.strip()]
    for name in ("fsname", "subtype"):
        if not any(o.startswith(f"{name}=") for o in given):
            options.add(f"{name}=canfarfs")
    if opts.read_only:
        options.add("ro")
    options.update(given)
    return options


def tls_verify(ca_file: Path | None) -> ssl.SSLContext | bool:
    """Certificate verification for every HTTPS request: on, against ``ca_file`` alone if
    given, else the default trust store. There is deliberately no way to turn it off."""
    if ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(ca_file))


class MountOps(CanfarOps):
    """The FUSE adapter, with the credentials' state in ``canfarfs status``."""

    def __init__(self, storage: Storage, sessions: SessionsTree | None, auth: AuthInfo) -> None:
        super().__init__(storage, sessions)
        self.auth = auth

    def _status_doc(self) -> dict[str, Any]:
        return {**super()._status_doc(), "auth": self.auth.describe()}


#: glibc mallopt parameter (malloc.h).
_M_ARENA_MAX = -8
#: Seconds between returns of freed heap memory to the system (glibc malloc_trim).
TRIM_EVERY = 30.0


def _libc() -> ctypes.CDLL | None:
    with contextlib.suppress(OSError):
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return None


def tune_process() -> None:
    """Settings a long-running daemon wants, each best effort.

    * Open files: the soft limit rises to the hard one (at most 65536): cached and
      staged files each hold a descriptor, and 1024 is reached by an ``ls``/``cat`` of a
      big directory.
    * Memory: two malloc arenas instead of one per thread (see also :func:`trim_memory`).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as exc:
            log.debug("open-file limit left at %d: %s", soft, exc)
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_ARENA_MAX, 2)


async def trim_memory() -> None:
    """Every TRIM_EVERY seconds, hand freed heap memory back (glibc ``malloc_trim``).

    glibc keeps freed memory for reuse; after bursts of 1 MiB buffers the 10-minute soak
    showed that as +25 MB of RSS with flat live data (docs/reliability.md, Soak).
    Lowering the mmap threshold instead returned it at once but made every 1 MiB buffer
    an mmap with fresh pages: sequential reads ran 2.6 times slower. A periodic trim
    costs milliseconds.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return
    while True:
        await trio.sleep(TRIM_EVERY)
        libc.malloc_trim(0)


async def run_mount(opts: MountOptions) -> None:
    """Mount and serve until unmounted or signalled."""
    tune_process()
    lock_fd = lock_cache_dir(opts.cache_dir)
    try:
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            arc_url, vault_url, token = opts.arc_url, opts.vault_url, opts.token
            if opts.local is not None:
                arc_url, vault_url, token = await _start_local(opts, nursery, stack)
            if not arc_url or not vault_url:
                raise errors.CanfarfsError(
                    "no storage URLs: give --local DIR, or --arc-url and --vault-url"
                )
            # A wait for an answer gets --timeout; retrying transient failures (503s, dropped
            # connections) may take the operation to twice that, never more.
            timeouts = Timeouts(connect=opts.timeout, read=opts.timeout, operation=2 * opts.timeout)
            provider = None
            if not token and opts.token_provider is not None:
                provider = opts.auth.wrap(opts.token_provider)
            http = HTTP(
                make_client(
                    timeouts=timeouts, cert=opts.cert_file, verify=tls_verify(opts.ca_file)
                ),
                Credentials(token=token, token_provider=provider),
                timeouts=timeouts,
            )
            http.bulk = BulkGetter(
                ssl_context=tls_context(tls_verify(opts.ca_file), opts.cert_file),
                connect_timeout=timeouts.connect,
                read_timeout=timeouts.read,
            )
            stack.push_async_callback(http.aclose)
            clients = {
                "arc": VOSpaceClient(http, arc_url, "arc"),
                "vault": VOSpaceClient(http, vault_url, "vault"),
            }
            storage = Storage(
                clients,
                StorageConfig(
                    cache_dir=opts.cache_dir,
                    mountpoint=opts.mountpoint.resolve(),
                    meta_ttl=opts.meta_ttl,
                    negative_ttl=opts.meta_ttl,
                    read_timeout=opts.timeout,
                    read_only=opts.read_only,
                    strict_modes=opts.strict_modes,
                    writeback=opts.writeback,
                    writeback_delay=opts.writeback_delay,
                    cache_size=opts.cache_size,
                    memory=opts.memory,
                    user=opts.user,
                ),
                nursery,
            )
            if opts.offline:
                storage.go_offline("started with --offline")
            spawn(
                nursery,
                functools.partial(watch, probe_first=not opts.offline),
                storage,
                what="watching whether the services answer",
            )
            for line in await storage.recover():
                log.warning("%s", line)
            sessions = None
            if opts.skaha_url:
                sessions = SessionsTree(
                    SkahaClient(http, opts.skaha_url),
                    user=opts.user,
                    registry=opts.registry,
                    arc=StorageArcFiles(storage),
                )
            ops = MountOps(storage, sessions, opts.auth)
            target = str(opts.mountpoint.resolve())  # before init: resolving after it
            pyfuse3.init(ops, target, fuse_options(opts))  # would call into ourselves
            log.info("mounted %s (arc %s, vault %s)", opts.mountpoint, arc_url, vault_url)
            try:
                nursery.start_soon(_watch_signals)
                spawn(nursery, trim_memory, what="returning freed memory")
                spawn(nursery, _tune_after_init, target, what="tuning the kernel read-ahead")
                if opts.on_ready is not None:
                    opts.on_ready()
                await pyfuse3.main(min_tasks=4, max_tasks=64)
            finally:
                pyfuse3.close(unmount=True)
                storage.close()
                log.info("unmounted %s", opts.mountpoint)
            nursery.cancel_scope.cancel()
    finally:
        os.close(lock_fd)


READAHEAD_KB = 1024


def tune_readahead(target: str) -> None:
    """Ask the kernel for 1 MiB read-ahead on this mount (its default, 128 KiB, means
    eight times more FUSE requests for a sequential read). Needs root; skipped quietly
    otherwise. The device comes from mountinfo: stat() on the mount would call into
    this very daemon before its loop runs (``target`` is resolved beforehand)."""
    try:
        with open("/proc/self/mountinfo") as f:
            dev = next((line.split()[2] for line in f if line.split()[4] == target), None)
        if dev is not None:
            Path(f"/sys/class/bdi/{dev}/read_ahead_kb").write_text(f"{READAHEAD_KB}\n")
            log.debug("read-ahead for %s set to %d KiB", target, READAHEAD_KB)
    except OSError as exc:
        log.debug("read-ahead left at the kernel default: %s", exc)


async def _tune_after_init(target: str) -> None:
    """The kernel sets read-ahead when it processes FUSE INIT, once the loop runs."""
    await trio.sleep(1.0)
    tune_readahead(target)


async def _start_local(
    opts: MountOptions, nursery: trio.Nursery, stack: AsyncExitStack
) -> tuple[str, str, str]:
    """Serve the bundled emulator on loopback in this process; return its URLs."""
    from canfarfs.emulator.app import build_emulator
    from canfarfs.emulator.config import load_config
    from canfarfs.emulator.server import serve_emulator

    assert opts.local is not None
    config = load_config(opts.local, user=opts.user)
    emulator = build_emulator(config)
    stack.callback(emulator.close)
    url: str = await nursery.start(serve_emulator, emulator, "127.0.0.1", 0)
    log.info("local platform at %s (data in %s)", url, opts.local)
    opts.auth = AuthInfo(kind="local", source=f"--local {opts.local}")
    opts.skaha_url = opts.skaha_url or f"{url}/skaha/v1"
    return f"{url}/arc", f"{url}/vault", config.user.token


async def _watch_signals() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            log.info("signal received: unmounting")
            pyfuse3.terminate()
            return
