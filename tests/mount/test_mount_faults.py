"""Faults through a real mount: errors injected by the emulator, servers and daemons
killed. Nothing a user wrote is lost, nothing hangs (docs/reliability.md)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from tests.emulator_util import TOKEN
from tests.mount_util import RIG_TIMEOUT as TIMEOUT
from tests.mount_util import Rig, data, home, is_mounted, needs_fuse, start_mount

pytestmark = [needs_fuse, pytest.mark.fuse]


@pytest.mark.semantics("Bounds")
@pytest.mark.parametrize("service", ["arc", "vault"])
def test_503s_are_retried_without_the_user_noticing(rig: Rig, service: str) -> None:
    payload = data(3_000_000)
    rig.faults(fail_next=3, fail_status=503)
    (home(rig, service) / "retried.bin").write_bytes(payload)
    rig.faults(fail_next=3, fail_status=503)
    assert (home(rig, service) / "retried.bin").read_bytes() == payload


@pytest.mark.semantics("Reading")
@pytest.mark.parametrize("service", ["arc", "vault"])
def test_reads_cut_mid_body_resume(rig: Rig, service: str) -> None:
    payload = data(6_000_000)
    (home(rig, service) / "cut.bin").write_bytes(payload)
    rig.faults(drop_next=2, drop_after=1_000_000, methods=["GET"], path_prefix="/")
    assert (home(rig, service) / "cut.bin").read_bytes() == payload


@pytest.mark.semantics("Bounds")
def test_latency_beyond_the_timeout_is_etimedout_and_cached_views_still_answer(
    rig: Rig,
) -> None:
    h = home(rig, "arc")
    (h / "slow.bin").write_bytes(data(100_000))
    (h / "d").mkdir()
    assert "slow.bin" in os.listdir(h)
    os.statvfs(h)
    rig.faults(latency=TIMEOUT * 4)
    time.sleep(1.5)  # the listing's TTL passes: it is now stale, not fresh
    start = time.monotonic()
    with pytest.raises(OSError) as exc:
        (h / "d" / "never-seen").read_bytes()
    # ETIMEDOUT (or EIO after retries) from the request; or, once the mount's probe has
    # found arc not answering (offline, docs/semantics.md), ENOENT from d's last listing.
    assert exc.value.errno in (errno.ETIMEDOUT, errno.EIO, errno.ENOENT)
    assert time.monotonic() - start < TIMEOUT * 12
    assert "slow.bin" in os.listdir(h)  # answered from the cached listing
    start = time.monotonic()
    os.statvfs(h)
    assert time.monotonic() - start < TIMEOUT * 2
    rig.clear()
    # arc is offline now (docs/semantics.md, Offline): online again within a probe
    deadline = time.monotonic() + 10
    while not json.loads((rig.mount.path / ".canfarfs-control").read_bytes())["services"]["arc"][
        "reachable"
    ]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert (h / "slow.bin").read_bytes() == data(100_000)


@pytest.mark.semantics("Writing and durability")
def test_server_stopped_mid_copy_fails_cleanly_and_the_same_cp_then_succeeds(
    rig: Rig,
) -> None:
    src = rig.tmp / "big.bin"
    payload = data(200 * 1024 * 1024)
    src.write_bytes(payload)
    dest = home(rig, "arc") / "big.bin"
    cp = subprocess.Popen(["cp", str(src), str(dest)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # a sleep raced a cp that now takes under 1 s
        try:
            if os.stat(dest).st_size > 16 * 1024 * 1024:
                break
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    rig.live.proc.send_signal(signal.SIGKILL)
    rig.live.proc.wait()
    start = time.monotonic()
    _, err = cp.communicate(timeout=TIMEOUT * 20)
    assert time.monotonic() - start < TIMEOUT * 20
    assert cp.returncode != 0, "cp must not report success"
    assert err
    rig.restart_emulator()
    r = rig.node("arc", "home/alice/big.bin")
    if r.status_code == 200:  # whatever is there must not look complete
        assert f">{len(payload)}<" not in r.text or hashlib.md5(payload).hexdigest() not in r.text  # noqa: S324
    again = subprocess.run(
        ["cp", str(src), str(dest)], capture_output=True, text=True, timeout=300, check=False
    )
    assert again.returncode == 0, again.stderr
    md5 = os.getxattr(dest, "user.MD5").decode()
    assert md5 == hashlib.md5(payload).hexdigest()  # noqa: S324


def crash_with_unsaved(rig: Rig, target: Path, payload: bytes) -> None:
    """A writer holds ``target`` open with ``payload`` flushed (staged, not yet uploaded)
    when the daemon is SIGKILLed; then ``canfarfs umount`` clears the dead mount."""
    src = rig.tmp / f"{target.name}.src"
    src.write_bytes(payload)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\n"
                f"f = open({str(target)!r}, 'wb')\n"
                f"f.write(open({str(src)!r}, 'rb').read())\n"
                "f.flush()\n"
                "print('written', flush=True)\n"
                "time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "written"
    rig.mount.proc.send_signal(signal.SIGKILL)
    rig.mount.proc.wait()
    writer.kill()
    writer.wait()
    writer.stdout.close()
    umount = subprocess.run(
        [sys.executable, "-m", "canfarfs", "umount", str(rig.mount.path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert umount.returncode == 0, umount.stderr
    assert not is_mounted(rig.mount.path)


@pytest.mark.semantics("Writing and durability")
def test_sigkill_of_the_daemon_loses_nothing(rig: Rig) -> None:
    payload = data(500_000)
    crash_with_unsaved(rig, home(rig, "vault") / "unsaved.bin", payload)
    env = dict(os.environ, CANFARFS_USER="alice")
    rig.mount = start_mount(rig.mount.path, rig.mount_args, env=env)
    assert (rig.mount.path / "vault/alice/unsaved.bin").read_bytes() == payload
    assert "recovered: vault:alice/unsaved.bin" in rig.mount.log_text()


def test_a_second_daemon_on_the_same_cache_dir_is_refused(rig: Rig) -> None:
    other = rig.tmp / "mnt2"
    other.mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "canfarfs", "mount", str(other), *rig.mount_args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode != 0
    assert "another canfarfs daemon is using the cache directory" in r.stderr
    assert "Traceback" not in r.stderr
    assert not is_mounted(other)


def test_a_recovered_upload_that_fails_again_stays_pending_in_status(rig: Rig) -> None:
    """After a crash, bytes the next mount cannot upload yet are a pending upload of that
    mount: status lists them, reads see them, and `canfarfs sync` uploads them."""
    payload = data(300_000)
    crash_with_unsaved(rig, home(rig, "arc") / "later.bin", payload)
    rig.faults(fail_rate=1.0, fail_status=503, methods=["PUT"])
    env = dict(os.environ, CANFARFS_USER="alice")
    rig.mount = start_mount(rig.mount.path, rig.mount_args, env=env)
    assert "still pending: arc:home/alice/later.bin" in rig.mount.log_text()
    status = subprocess.run(
        [sys.executable, "-m", "canfarfs", "status", "--json", str(rig.mount.path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "home/alice/later.bin" in status.stdout, status.stdout + status.stderr
    assert (rig.mount.path / "arc/home/alice/later.bin").read_bytes() == payload
    rig.clear()
    sync = subprocess.run(
        [sys.executable, "-m", "canfarfs", "sync", str(rig.mount.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sync.returncode == 0, sync.stdout + sync.stderr
    got = httpx2.get(
        f"{rig.live.url}/arc/files/home/alice/later.bin",
        timeout=30,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert got.content == payload
