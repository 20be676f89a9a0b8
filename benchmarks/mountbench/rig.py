"""What the workloads run in: a private network namespace and the round-trip time,
fresh mounts (canfarfs, mountvofs, the passthrough floor) and their teardown, and
:class:`Bench`, the state of one run, where the figures are recorded."""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import is_mounted

from .emulator import Emulator, canfarfs_env
from .tools import BENCHMARKS, TOKEN, USER, Failed, log, on_mount, run

VOS_BIN = Path(sys.executable).parent
TOOLS = ("canfarfs", "curl", "vcp", "mountvofs")


# -- the network namespace and the round-trip time ------------------------------------

CLONE_NEWNET = 0x40000000


class NetNamespace:
    """A private network namespace the whole benchmark moves into (root only)."""

    def __init__(self) -> None:
        self.name = f"canfarfs-bench-{os.getpid()}"
        self.active = False
        self.reason = ""

    def enter(self) -> bool:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            self.reason = "not root or no ip(8)"
            return False
        r = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True)
        if r.returncode != 0:
            self.reason = f"ip netns add: {r.stderr.strip()}"
            return False
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            self.reason = f"setns: {exc}"
            self.delete()
            return False
        self.active = True
        return True

    def netem_works(self) -> tuple[bool, str]:
        """Can ``tc qdisc ... netem delay`` be set on this namespace's loopback?"""
        if not self.active or shutil.which("tc") is None:
            return False, "no private namespace or no tc(8)"
        r = subprocess.run(
            ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            return False, f"tc netem: {r.stderr.strip() or r.returncode}"
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
        return True, "netem"

    def set_netem(self, rtt_ms: float) -> None:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
        if rtt_ms > 0:
            # loopback: each packet passes lo once each way, so half the RTT per pass
            subprocess.run(
                ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", f"{rtt_ms / 2}ms"],
                check=True,
                capture_output=True,
            )

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def lo_bytes() -> int:
    """Bytes received on this namespace's loopback (every byte sent is received once)."""
    with open("/proc/self/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                return int(rest.split()[0])
    return 0


# -- mounts ---------------------------------------------------------------------------


def fusermount() -> str:
    return shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3"


@dataclass
class Mount:
    """A FUSE daemon in the foreground (canfarfs or mountvofs) and its mount point."""

    kind: str
    path: Path
    proc: subprocess.Popen[bytes]
    log: Path
    started_s: float = 0.0

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(
            on_mount(["cat", str(self.path / ".canfarfs-control")], 30)
        )
        return doc

    def vm_hwm_kib(self) -> int | None:
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
        return int(m.group(1)) if m else None

    def peak_rss(self) -> dict[str, float]:
        """``{"vm_hwm_mb": …}``: the daemon's peak resident size so far, when known."""
        hwm = self.vm_hwm_kib()
        return {} if hwm is None else {"vm_hwm_mb": round(hwm * 1024 / 1e6, 1)}

    def unmount(self) -> None:
        for _ in range(2):
            if not is_mounted(self.path):
                break
            try:
                r = subprocess.run(
                    [fusermount(), "-u", str(self.path)], capture_output=True, timeout=60
                )
                if r.returncode == 0:
                    break
            except subprocess.TimeoutExpired:
                log(f"  {self.kind}: fusermount -u did not return in 60 s")
                self.proc.kill()
            time.sleep(0.5)
        else:
            subprocess.run([fusermount(), "-uz", str(self.path)], capture_output=True)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            log(f"  {self.kind}: daemon still running 60 s after the unmount; ending it")
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if is_mounted(self.path):
            subprocess.run([fusermount(), "-uz", str(self.path)], capture_output=True)

    def discard(self) -> None:
        """Unmount, and remove the mount's directory (its cache and logs)."""
        self.unmount()
        shutil.rmtree(self.path.parent, ignore_errors=True)


def wait_mounted(
    kind: str, mnt: Path, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60
) -> Mount:
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    while not is_mounted(mnt):
        if proc.poll() is not None:
            raise Failed(
                f"{kind} mount exited {proc.returncode}: "
                f"{log_path.read_text(errors='replace')[-400:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise Failed(f"{kind} not mounted after {timeout} s")
        time.sleep(0.02)
    mount = Mount(kind, mnt, proc, log_path, time.perf_counter() - t0)
    try:
        on_mount(["stat", "-t", str(mnt)], 30)
    except Failed as exc:
        log(f"  {kind}: mounted but the root does not answer: {exc}")
        proc.kill()
        proc.wait()
        subprocess.run([fusermount(), "-uz", str(mnt)], capture_output=True)
        raise Failed(
            f"{kind} mounted but stat of its root got no answer in 30 s (daemon hung at start-up?)"
        ) from exc
    return mount


def spawn_mount(
    kind: str, base: Path, cmd: list[str], log_path: Path, env: dict[str, str] | None = None
) -> Mount:
    """Start a FUSE daemon in ``base`` (output to ``log_path``) and wait for
    ``base/mnt`` to be mounted."""
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=base)
    return wait_mounted(kind, base / "mnt", proc, log_path)


# -- the run ----------------------------------------------------------------------------


class Bench:
    """The state of one benchmark run: directories, emulator, environments, results."""

    def __init__(
        self, args: argparse.Namespace, work: Path, shm: Path, workloads: tuple[str, ...]
    ) -> None:
        self.args = args
        self.work = work
        self.shm = shm
        self.seq = 0
        self.emu: Emulator | None = None
        self.results: dict[str, dict[str, Any]] = {k: {} for k in workloads}
        self.notes: list[str] = []
        self.vofs_status = "not tried"
        self.vofs_ok = False
        self.rtt_method = "none"
        self.netns: NetNamespace | None = None
        self.vos_home = work / "vos-home"
        self.payload = shm / "payload.bin"
        self.payload_md5 = ""
        self.block = b""
        self.small_src = shm / "small"
        self.small_vofs = shm / "small-vofs"
        self.vofs_payload = shm / "vofs.bin"
        self.vofs_size = min(args.size, args.vofs_size)
        self.vofs_md5 = ""
        self.offsets: list[int] = []
        self.mount_failures = 0
        self.mount_seconds: list[float] = []
        self.interrupted = ""

    # -- the network and the round-trip time --------------------------------------------

    def isolate(self) -> str:
        """Move into a private network namespace where possible, and choose how the
        round-trip time is simulated; what the byte counts count."""
        netns = NetNamespace()
        if not self.args.no_netns and netns.enter():
            self.netns = netns
            bytes_note = "loopback bytes of a private network namespace (both directions)"
        else:
            bytes_note = f"not counted ({netns.reason or '--no-netns'}); see cache_used"
        netem, why = netns.netem_works() if self.netns else (False, "no private namespace")
        if netem and not self.args.latency_knob:
            self.rtt_method = "netem delay on the namespace's loopback"
        else:
            self.rtt_method = (
                "emulator latency knob (seconds added before every request; "
                f"netem unavailable: {why})"
            )
        return bytes_note

    def set_rtt(self, rtt: int) -> None:
        """The round-trip time (ms) every request sees from now on."""
        assert self.emu is not None
        if self.rtt_method.startswith("netem"):
            assert self.netns is not None
            self.netns.set_netem(rtt)
            self.emu.set_latency(0)
        else:
            self.emu.set_latency(rtt / 1000)

    # -- environments ---------------------------------------------------------------

    def new_dir(self, stem: str) -> Path:
        self.seq += 1
        p = self.work / f"{stem}-{self.seq}"
        p.mkdir(parents=True)
        return p

    def vos_env(self) -> dict[str, str]:
        assert self.emu is not None
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CANFAR_", "VOSPACE_", "PYTHON"))
        }
        env["HOME"] = str(self.vos_home)
        env["VOSPACE_WEBSERVICE"] = self.emu.hostport
        env["VOSPACE_CONFIG_FILE"] = str(self.vos_home / "vos-config")
        # keep the seeded registry cache "fresh" (younger than 10 min: no network probe)
        caps = (
            self.vos_home
            / ".config"
            / "cadc-registry"
            / "alt-domains"
            / self.emu.hostport
            / "resource-caps"
        )
        if caps.exists():
            os.utime(caps)
        return env

    def seed_vos_home(self) -> None:
        assert self.emu is not None
        caps = self.vos_home / ".config" / "cadc-registry" / "alt-domains" / self.emu.hostport
        caps.mkdir(parents=True)
        (caps / "resource-caps").write_text(
            f"ivo://cadc.nrc.ca/arc = {self.emu.url}/arc/capabilities\n"
            f"ivo://cadc.nrc.ca/vault = {self.emu.url}/vault/capabilities\n"
        )
        (self.vos_home / "vos-config").write_text(
            "[vos]\nresourceID = ivo://cadc.nrc.ca/vault vault\n  ivo://cadc.nrc.ca/arc arc\n"
        )

    def vos(self, tool: str, *args: str, timeout: float | None = None) -> float:
        cmd = [str(VOS_BIN / tool), "--token", TOKEN, *args]
        return run(cmd, timeout=timeout or self.args.timeout, env=self.vos_env(), cwd=self.work)

    # -- mounts -----------------------------------------------------------------------

    def mount_base(self, stem: str) -> Path:
        """A new directory for one mount, with its empty ``mnt``."""
        base = self.new_dir(stem)
        (base / "mnt").mkdir()
        return base

    def mount_canfarfs(self, options: tuple[str, ...] = ()) -> Mount:
        """A fresh canfarfs mount; ``options``: more ``canfarfs mount`` flags
        (e.g. ``("--writeback",)``)."""
        assert self.emu is not None
        if self.mount_failures >= 2:
            raise Failed("skipped: canfarfs failed to mount twice in a row")
        base = self.mount_base("canfarfs")
        token = base / "token"
        token.write_text(TOKEN + "\n")
        token.chmod(0o600)
        env = canfarfs_env(CANFARFS_USER=USER, XDG_STATE_HOME=str(base / "state"))
        cmd = [
            sys.executable,
            "-m",
            "canfarfs",
            "mount",
            str(base / "mnt"),
            "--foreground",
            "--arc-url",
            f"{self.emu.url}/arc",
            "--vault-url",
            f"{self.emu.url}/vault",
            "--skaha-url",
            f"{self.emu.url}/skaha/v1",
            "--token-file",
            str(token),
            "--cache-dir",
            str(base / "cache"),
            *options,
        ]
        try:
            # run in base, not the repository: --canfarfs-src wins
            mount = spawn_mount("canfarfs", base, cmd, base / "mount.log", env)
        except Failed:
            self.mount_failures += 1
            raise
        self.mount_failures = 0
        self.mount_seconds.append(mount.started_s)
        return mount

    def mount_vofs(self, vospace: str) -> Mount:
        base = self.mount_base("vofs")
        env = self.vos_env()
        env["PYTHONPATH"] = str(self.args.vofs_target)
        cmd = [
            sys.executable,
            str(self.args.vofs_target / "bin" / "mountvofs"),
            "--token",
            TOKEN,
            "--vospace",
            vospace,
            "--mountpoint",
            str(base / "mnt"),
            "--cache_dir",
            str(base / "cache"),
            "-f",
            "-w",
            "--log",
            str(base / "vofs.log"),
        ]
        return spawn_mount("mountvofs", base, cmd, base / "stdout.log", env)

    def mount_floor(self, source: Path) -> Mount:
        """The FUSE-in-Python floor: a pyfuse3 passthrough of ``source`` (issue 6)."""
        base = self.mount_base("floor")
        cmd = [
            sys.executable,
            str(BENCHMARKS / "passthrough_fs.py"),
            str(source),
            str(base / "mnt"),
        ]
        return spawn_mount("floor", base, cmd, base / "passthrough.log")

    @contextmanager
    def floored(self, source: Path) -> Iterator[Path]:
        """A fresh passthrough mount of ``source``; yields its mount point."""
        m = self.mount_floor(source)
        try:
            yield m.path
        finally:
            m.discard()

    @contextmanager
    def mounted(
        self, tool: str, service: str, options: tuple[str, ...] = ()
    ) -> Iterator[tuple[Mount, Path]]:
        """A fresh mount (fresh cache) and the path of alice's home on ``service``;
        ``options``: more ``canfarfs mount`` flags (canfarfs only)."""
        if tool == "canfarfs":
            m = self.mount_canfarfs(options)
            home = m.path / ("arc/home" if service == "arc" else "vault") / USER
        else:
            m = self.mount_vofs("arc:home/alice" if service == "arc" else "vault:alice")
            home = m.path
        try:
            yield m, home
        finally:
            m.discard()

    # -- recording --------------------------------------------------------------------

    def _cell(self, workload: str, rtt: int, tool: str) -> dict[str, Any]:
        cell: dict[str, Any] = (
            self.results[workload]
            .setdefault(str(rtt), {})
            .setdefault(tool, {"runs": [], "extra": []})
        )
        return cell

    def record(self, workload: str, rtt: int, tool: str, value: float | None, **extra: Any) -> None:
        """One run's figure (in the row's unit) and what else was seen (medians of
        ``extra`` entries are used by the verdicts, e.g. ``requests``)."""
        cell = self._cell(workload, rtt, tool)
        if value is not None:
            cell["runs"].append(value)
        cell["extra"].append(extra)

    def fail(self, workload: str, rtt: int, tool: str, exc: BaseException) -> None:
        self._cell(workload, rtt, tool).setdefault("errors", []).append(str(exc)[:300])
        log(f"  {workload} {tool} @{rtt} ms FAILED: {str(exc)[:200]}")

    def attempt(self, workload: str, rtt: int, tool: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Failed as exc:
            self.fail(workload, rtt, tool, exc)
        except Exception as exc:
            self.fail(workload, rtt, tool, Failed(f"{type(exc).__name__}: {exc}"))
            if self.args.verbose:
                traceback.print_exc()

    def measure(
        self,
        workload: str,
        rtt: int,
        run_no: int,
        tool: str,
        fn: Callable[[], None],
        label: str | None = None,
    ) -> None:
        """Say what runs, and run it; a failure is recorded against ``tool``."""
        log(f"  {label or workload} @{rtt} ms run {run_no + 1}: {tool}")
        self.attempt(workload, rtt, tool, fn)

    @contextmanager
    def counting(self) -> Iterator[dict[str, int]]:
        """Emulator requests and loopback bytes during the block."""
        assert self.emu is not None
        self.emu.reset_stats()
        b0 = lo_bytes()
        box: dict[str, int] = {}
        yield box
        box["wire_bytes"] = lo_bytes() - b0
        box["requests"] = self.emu.requests_seen()

    def tools(self, *wanted: str, run: int = 0) -> list[str]:
        out = []
        for t in wanted:
            if t == "mountvofs" and (not self.vofs_ok or run >= self.args.vofs_runs):
                continue
            if t == "vcp" and self.args.no_vcp:
                continue
            out.append(t)
        return out

    def runs_for(self, rtt: int, slow: bool) -> int:
        return int(self.args.slow_runs if (slow and rtt > 0) else self.args.runs)
