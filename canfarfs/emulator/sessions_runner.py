"""Running Skaha sessions locally: headless commands as host processes, interactive
kinds as a Pending → Running state machine, plus expiry and garbage collection.

A headless session runs ``cmd args…`` (no image, no container) in a new process group,
with a clean environment, HOME and working directory ``<root>/sessions/<id>/home``,
and stdout+stderr appended straight to ``<root>/sessions/<id>/logs``. Where the OS
allows it (root, ``unshare`` and ``mount`` available) the process gets a private mount
namespace in which ``<root>/arc`` is bind-mounted at ``/arc``; ``ARC_ROOT`` always says
where the arc tree is. See docs/emulator-skaha.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from canfarfs.emulator.skaha_db import SessionDB
from canfarfs.emulator.skaha_model import (
    COMPLETED,
    FAILED,
    HEADLESS,
    NAMESPACE,
    NODE_NAME,
    PENDING,
    RUNNING,
    SessionRow,
    SkahaSettings,
    env_mapping,
    one_line,
)

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The shell step run inside the private mount namespace before the command.
_NS_SCRIPT = 'mount --bind -- "$0" /arc || exit 125; exec "$@"'


@dataclass(frozen=True)
class ArcView:
    """How a process sees arc: ``visible`` is the path it is given in ``ARC_ROOT``."""

    host: Path
    visible: str
    #: ``[unshare, …, sh, -c, script, <host arc>]`` to prefix, or () without a namespace.
    prefix: tuple[str, ...] = ()


@dataclass
class Launch:
    """What the blocking preparation step found out about one headless session."""

    argv: list[str]
    cwd: Path
    log_fd: int
    problem: str | None


def session_dir(root: Path, sid: str) -> Path:
    return root / "sessions" / sid


def log_path(root: Path, sid: str) -> Path:
    return session_dir(root, sid) / "logs"


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (/proc/<pid>/stat field 22), to tell pids apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def kill_orphans(rows: list[SessionRow]) -> None:
    """Kill process groups a crashed emulator left behind (same pid *and* start time)."""
    for row in rows:
        if row.pid and row.pid_start and process_start(row.pid) == row.pid_start:
            with contextlib.suppress(OSError):
                os.killpg(row.pid, signal.SIGKILL)


def process_env(row: SessionRow, home: Path, arc: ArcView) -> dict[str, str]:
    """A clean environment: nothing of the emulator's own but PATH, then the spec's env."""
    env = {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "USER": row.userid,
        "LOGNAME": row.userid,
        "ARC_ROOT": arc.visible,
    }
    env.update(env_mapping(row.env))
    return env


def _findable(cmd: str, env: dict[str, str], cwd: Path, arc: ArcView) -> bool:
    """Whether ``cmd`` would be found and executable, as exec would look it up."""
    if "/" not in cmd:
        return bool(cmd) and shutil.which(cmd, path=env.get("PATH", "")) is not None
    path = Path(cmd)
    if arc.prefix and (cmd == "/arc" or cmd.startswith("/arc/")):
        path = arc.host / cmd[len("/arc/") :]
    elif not path.is_absolute():
        path = cwd / path
    return path.is_file() and os.access(path, os.X_OK)


def prepare(root: Path, row: SessionRow, arc: ArcView, env: dict[str, str]) -> Launch:
    """Blocking: make the session's directories, open its log, check the command."""
    base = session_dir(root, row.id)
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(base / "logs", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    argv = ([row.cmd] if row.cmd is not None else []) + list(row.args or [])
    problem = None
    if argv and not _findable(argv[0], env, home, arc):
        problem = f'exec: "{argv[0]}": executable file not found in $PATH'
    return Launch(argv=argv, cwd=home, log_fd=fd, problem=problem)


def write_note(fd: int, text: str) -> None:
    os.write(fd, text.encode())


async def probe_arc(root: Path, settings: SkahaSettings) -> ArcView:
    """Decide how processes see arc: a private mount namespace if it works, else env."""
    host = (root / "arc").resolve()
    plain = ArcView(host=host, visible=str(host))
    unshare, mount, sh = shutil.which("unshare"), shutil.which("mount"), shutil.which("sh")
    if settings.arc_mount != "auto" or os.geteuid() != 0 or not (unshare and mount and sh):
        return plain
    try:
        await trio.to_thread.run_sync(lambda: Path("/arc").mkdir(mode=0o755, exist_ok=True))
        prefix = (
            unshare,
            "--mount",
            "--propagation",
            "private",
            "--",
            sh,
            "-c",
            _NS_SCRIPT,
            str(host),
        )
        with trio.move_on_after(10):
            done = await trio.run_process(
                [*prefix, "true"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if done.returncode == 0:
                return ArcView(host=host, visible="/arc", prefix=prefix)
    except OSError as exc:
        log.info("no private /arc mount for sessions: %s", exc)
    return plain


class SessionRunner:
    """Owns the tasks of live sessions; :meth:`run` is the service's background work."""

    def __init__(
        self, db: SessionDB, root: Path, settings: SkahaSettings, clock: Callable[[], float]
    ) -> None:
        self.db = db
        self.root = root
        self.settings = settings
        self.clock = clock
        self.arc = ArcView(host=root / "arc", visible=str(root / "arc"))
        self._nursery: trio.Nursery | None = None
        self._scopes: dict[str, trio.CancelScope] = {}

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Start pending sessions, then expire and collect them, until cancelled."""
        self.arc = await probe_arc(self.root, self.settings)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                for row in self.db.with_status([PENDING]):
                    self.launch(row)
                while True:
                    try:
                        await self.maintain()
                    except OSError as exc:
                        log.warning("session maintenance failed: %s", exc)
                    await trio.sleep(self.settings.tick)
            finally:
                self._nursery = None

    def launch(self, row: SessionRow) -> None:
        """Start the session's task (no-op without a running :meth:`run` or if started)."""
        if self._nursery is None or row.key in self._scopes:
            return
        scope = self._scopes[row.key] = trio.CancelScope()
        self._nursery.start_soon(self._task, row, scope)

    def stop(self, key: str) -> bool:
        """Cancel a session's task (its processes are killed); False if it had none."""
        scope = self._scopes.pop(key, None)
        if scope is None:
            return False
        scope.cancel()
        return True

    async def forget(self, row: SessionRow) -> None:
        """A deleted session: stop it; its task or this removes the session directory."""
        if not self.stop(row.key) and row.kind == HEADLESS and row.appid is None:
            await self._remove_dir(row.id)

    async def maintain(self) -> None:
        """Expire sessions past their deadline; drop finished ones past their TTL."""
        now = self.clock()
        for row in self.db.with_status([RUNNING]):
            if row.expiry is not None and row.expiry <= now:
                self.stop(row.key)
                self.db.update(row.key, status=FAILED, finished=now, pid=None)
                self.event(
                    row,
                    "Warning",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
        cut_h, cut_i = now - self.settings.headless_ttl, now - self.settings.interactive_ttl
        for row in self.db.finished_before(cut_h, cut_i):
            self.db.delete(row.key)
            await self.forget(row)

    # -- one session -----------------------------------------------------------------

    def event(self, row: SessionRow, kind: str, reason: str, message: str) -> None:
        self.db.add_event(row.key, self.clock(), kind, reason, one_line(message))

    async def _task(self, row: SessionRow, scope: trio.CancelScope) -> None:
        try:
            with scope:
                self.event(
                    row,
                    "Normal",
                    "Scheduled",
                    f"Successfully assigned {NAMESPACE}/{row.pod_name} to {NODE_NAME}",
                )
                if row.kind == HEADLESS:
                    await trio.sleep(self.settings.headless_pending_seconds)
                    await self._headless(row)
                else:
                    await trio.sleep(self.settings.pending_seconds)
                    self._started(row)
        except OSError as exc:
            log.warning("session %s could not start: %s", row.key, exc)
            self._refuse(row, one_line(f"emulator: {exc}"))
        finally:
            if self._scopes.get(row.key) is scope:
                del self._scopes[row.key]
            if row.kind == HEADLESS and self.db.get(row.key) is None:
                with trio.CancelScope(shield=True), trio.move_on_after(30):
                    await self._remove_dir(row.id)

    def _started(
        self,
        row: SessionRow,
        pid: int | None = None,
        pid_start: str | None = None,
    ) -> None:
        container = row.job_name
        self.event(
            row, "Normal", "Pulled", f'Container image "{row.image}" already present on machine'
        )
        self.event(row, "Normal", "Created", f"Created container {container}")
        self.event(row, "Normal", "Started", f"Started container {container}")
        self.db.update(
            row.key, status=RUNNING, start_time=int(self.clock()), pid=pid, pid_start=pid_start
        )

    def _finish(self, row: SessionRow, code: int) -> None:
        status = COMPLETED if code == 0 else FAILED
        self.db.update(row.key, status=status, finished=self.clock(), exit_code=code, pid=None)
        if code == 0:
            self.event(row, "Normal", "Completed", "Job completed")
            return
        self.event(row, "Warning", "Failed", f"Container {row.job_name} exited with code {code}")
        self.event(
            row, "Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        )

    def _refuse(self, row: SessionRow, problem: str) -> None:
        """The container could not start: the session fails without running anything."""
        self.event(
            row, "Normal", "Pulled", f'Container image "{row.image}" already present on machine'
        )
        self.event(
            row,
            "Warning",
            "Failed",
            f'Error: failed to start container "{row.job_name}": {problem}',
        )
        self.db.update(row.key, status=FAILED, finished=self.clock(), exit_code=128)
        self.event(
            row, "Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        )

    async def _headless(self, row: SessionRow) -> None:
        home = session_dir(self.root, row.id) / "home"
        env = process_env(row, home, self.arc)
        launch = await trio.to_thread.run_sync(prepare, self.root, row, self.arc, env)
        try:
            if launch.problem is not None:
                self._refuse(row, launch.problem)
                return
            if not launch.argv or not self.settings.run:
                await self._pretend(row, launch)
                return
            proc = await self._spawn(row, launch, env)
        finally:
            os.close(launch.log_fd)
        if proc is None:
            return
        try:
            pid_start = await trio.to_thread.run_sync(process_start, proc.pid)
            self._started(row, proc.pid, pid_start)
            code = await proc.wait()
        finally:
            with trio.CancelScope(shield=True):
                await self._kill(proc)
        self._finish(row, code)

    async def _pretend(self, row: SessionRow, launch: Launch) -> None:
        """No command, or processes disabled: say so in the log and complete."""
        why = (
            "no cmd or args were given; the image's default command is not emulated"
            if not launch.argv
            else f"running session processes is disabled; {' '.join(launch.argv)!r} was not run"
        )
        await trio.to_thread.run_sync(write_note, launch.log_fd, f"canfarfs emulator: {why}\n")
        self._started(row)
        self._finish(row, 0)

    async def _spawn(
        self, row: SessionRow, launch: Launch, env: dict[str, str]
    ) -> trio.Process | None:
        """Start the process in its own group; a refusal (ENOENT, EACCES…) fails the session."""
        await trio.lowlevel.checkpoint_if_cancelled()  # deleted meanwhile: start nothing
        proc = None
        try:
            with trio.CancelScope(shield=True):
                proc = await trio.lowlevel.open_process(
                    [*self.arc.prefix, *launch.argv],
                    stdin=subprocess.DEVNULL,
                    stdout=launch.log_fd,
                    stderr=launch.log_fd,
                    env=env,
                    cwd=launch.cwd,
                    start_new_session=True,
                )
        except (OSError, ValueError) as exc:
            self._refuse(row, one_line(f"exec: {exc}"))
        return proc

    async def _kill(self, proc: trio.Process) -> None:
        """SIGTERM the group, wait ``kill_grace``, then SIGKILL whatever is left (bounded)."""
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            with trio.move_on_after(self.settings.kill_grace):
                await proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)
        with trio.move_on_after(5):
            await proc.wait()

    async def _remove_dir(self, sid: str) -> None:
        await trio.to_thread.run_sync(
            lambda: shutil.rmtree(session_dir(self.root, sid), ignore_errors=True)
        )


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
