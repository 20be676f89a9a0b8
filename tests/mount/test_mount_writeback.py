"""Write-back (docs/semantics.md, *Write-back*) through a real mount of an emulator on a
socket, with its faults: ``cp`` returns at once, ``ls -l``/``cat`` see the bytes, ``mv``
and ``rm`` of queued files end right, ``canfarfs sync``/``status``, a conflict, SIGKILL
with a full queue, and an outage that the queue outlives.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from canfarfs.vospace import props
from canfarfs.vospace.xml import parse_node
from tests.emulator_util import TOKEN, start_live_emulator
from tests.mount_util import Rig, is_mounted, mount_args, needs_fuse, start_mount, wait_until

pytestmark = [needs_fuse, pytest.mark.fuse, pytest.mark.semantics("Write-back")]
HOME = "home/alice"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """A socket emulator and a ``--writeback`` mount of it."""
    root = tmp_path / "emu"
    root.mkdir()
    live = start_live_emulator(root)
    args = [*mount_args(live.url, tmp_path), "--writeback"]
    m = start_mount(tmp_path / "mnt", args, env=dict(os.environ, CANFARFS_USER="alice"))
    r = Rig(live, m, tmp_path, args)
    yield r
    r.clear()
    if is_mounted(r.mount.path):
        r.mount.unmount()
    r.live.stop()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - the protocol's checksum


def server_md5(rig: Rig, name: str) -> str | None:
    r = httpx2.get(
        f"{rig.live.url}/arc/nodes/{HOME}/{name}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return parse_node(r.content).prop(props.MD5)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canfarfs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cp_returns_before_the_upload_and_sync_waits_for_it(rig: Rig) -> None:
    """At 300 ms per PUT, copying 20 files returns at once; the mount shows them; status
    lists the queue; `canfarfs sync` returns once all are on the server with their MD5."""
    home = rig.mount.path / "arc" / HOME
    src = rig.tmp / "src"
    src.mkdir()
    files = {f"f{i:02}.txt": f"file {i}\n".encode() * (i + 1) for i in range(20)}
    for name, body in files.items():
        (src / name).write_bytes(body)
    rig.faults(latency=0.3, methods=["PUT"])
    started = time.monotonic()
    subprocess.run(["cp", "-r", f"{src}/.", str(home)], check=True, timeout=60)
    assert time.monotonic() - started < 3.0  # 20 PUTs at 0.3 s would take 6 s
    assert {n: (home / n).read_bytes() for n in files} == files  # cat sees them at once
    listing = subprocess.run(["ls", "-l", str(home)], capture_output=True, text=True, check=True)
    assert "f19.txt" in listing.stdout
    status = json.loads(cli("status", "--json", str(rig.mount.path)).stdout)
    assert status["writeback"] is True
    sync = cli("sync", str(rig.mount.path))
    assert sync.returncode == 0, sync.stdout + sync.stderr
    for name, body in files.items():
        assert server_md5(rig, name) == md5(body), name
    status = json.loads(cli("status", "--json", str(rig.mount.path)).stdout)
    assert status["uploads"] == []


def test_queued_mv_and_rm_end_in_the_right_state(rig: Rig) -> None:
    home = rig.mount.path / "arc" / HOME
    rig.faults(fail_rate=1.0, fail_status=503, methods=["PUT"])
    (home / "draft.tmp").write_text("final text\n")
    (home / "scratch.txt").write_text("throw away\n")
    subprocess.run(["mv", str(home / "draft.tmp"), str(home / "paper.txt")], check=True)
    subprocess.run(["rm", str(home / "scratch.txt")], check=True)
    assert (home / "paper.txt").read_text() == "final text\n"
    assert not (home / "draft.tmp").exists()
    rig.clear()
    sync = cli("sync", str(rig.mount.path))
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert server_md5(rig, "paper.txt") == md5(b"final text\n")
    assert server_md5(rig, "draft.tmp") is None
    assert server_md5(rig, "scratch.txt") is None


def test_fsync_is_durable_and_says_so_when_it_cannot_be(rig: Rig) -> None:
    target = rig.mount.path / "arc" / HOME / "log.txt"
    with open(target, "wb") as f:
        f.write(b"entry 1\n")
        f.flush()
        os.fsync(f.fileno())
        assert server_md5(rig, "log.txt") == md5(b"entry 1\n")
        rig.faults(fail_rate=1.0, fail_status=503, methods=["PUT"])
        f.write(b"entry 2\n")
        f.flush()
        with pytest.raises(OSError):
            os.fsync(f.fileno())
    rig.clear()
    assert cli("sync", str(rig.mount.path)).returncode == 0
    assert server_md5(rig, "log.txt") == md5(b"entry 1\nentry 2\n")


def test_a_file_changed_on_the_server_meanwhile_is_kept_beside_it(rig: Rig) -> None:
    home = rig.mount.path / "arc" / HOME
    (home / "notes.txt").write_text("base\n")
    assert cli("sync", str(rig.mount.path)).returncode == 0
    with open(home / "notes.txt", "a") as mine:
        mine.write("mine\n")
        # Someone else saves notes.txt on the server while it is open here.
        put = httpx2.put(
            f"{rig.live.url}/arc/files/{HOME}/notes.txt",
            content=b"theirs\n",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert put.status_code in (200, 201), put.text
    assert cli("sync", str(rig.mount.path)).returncode == 0
    status = json.loads(cli("status", "--json", str(rig.mount.path)).stdout)
    [conflict] = status["conflicts"]
    aside = conflict["kept_as"].rsplit("/", 1)[1]
    assert aside.startswith("notes.txt.conflict-")
    assert server_md5(rig, "notes.txt") == md5(b"theirs\n")
    assert server_md5(rig, aside) == md5(b"base\nmine\n")
    assert "conflict: arc/home/alice/notes.txt" in rig.mount.log_text()
    human = cli("status", str(rig.mount.path)).stdout
    assert "Conflict" in human


def test_sigkill_with_a_full_queue_resumes_on_the_next_mount(rig: Rig) -> None:
    home = rig.mount.path / "arc" / HOME
    rig.faults(fail_rate=1.0, fail_status=503, methods=["PUT"])
    bodies = {f"q{i}.dat": os.urandom(1000 + i) for i in range(10)}
    for name, body in bodies.items():
        (home / name).write_bytes(body)  # each close returned: queued only
    rig.mount.proc.send_signal(signal.SIGKILL)
    rig.mount.proc.wait()
    assert cli("umount", str(rig.mount.path)).returncode == 0
    rig.clear()
    rig.mount = start_mount(
        rig.mount.path, rig.mount_args, env=dict(os.environ, CANFARFS_USER="alice")
    )
    assert "queued: arc:home/alice/q0.dat" in rig.mount.log_text()
    wait_until(lambda: all(server_md5(rig, n) == md5(b) for n, b in bodies.items()))
    assert {n: (home / n).read_bytes() for n in bodies} == bodies


def test_the_queue_outlives_an_outage(rig: Rig) -> None:
    """Writes during an outage queue; once the service answers, they all go up."""
    home = rig.mount.path / "arc" / HOME
    (home / "before.txt").write_text("listed\n")  # the directory is listed and cached
    assert cli("sync", str(rig.mount.path)).returncode == 0
    rig.faults(fail_rate=1.0, fail_status=503, methods=["PUT"])
    bodies = {f"o{i}.txt": f"offline {i}\n".encode() for i in range(5)}
    for name, body in bodies.items():
        (home / name).write_bytes(body)
    time.sleep(1.0)
    assert all(server_md5(rig, n) is None for n in bodies)
    rig.clear()
    wait_until(lambda: all(server_md5(rig, n) == md5(b) for n, b in bodies.items()), timeout=40)


def server_node_prop(rig: Rig, name: str, uri: str) -> str | None:
    r = httpx2.get(
        f"{rig.live.url}/arc/nodes/{HOME}/{name}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return parse_node(r.content).prop(uri)


def test_tar_x_keeps_its_dates_with_no_request_for_them_until_the_queue_sends_them(
    rig: Rig,
) -> None:
    """`tar -x` on a write-back mount: `ls -l` shows the archive's dates at once, and
    after `canfarfs sync` the server holds them (files and directories), MD5s too."""
    src = rig.tmp / "tree"
    (src / "sub").mkdir(parents=True)
    files = {"a.c": b"int a;\n", "sub/b.h": b"#define B 1\n"}
    for rel, body in files.items():
        (src / rel).write_bytes(body)
    stamps = {"a.c": 1_600_000_000, "sub/b.h": 1_600_000_100, "sub": 1_600_000_200}
    for rel, when in stamps.items():
        os.utime(src / rel, (when, when))
    os.utime(src, (1_600_000_300, 1_600_000_300))
    tarball = rig.tmp / "tree.tar"
    subprocess.run(["tar", "-cf", str(tarball), "-C", str(rig.tmp), "tree"], check=True)
    home = rig.mount.path / "arc" / HOME
    rig.live.reset_stats()
    subprocess.run(["tar", "--no-same-owner", "-xf", str(tarball), "-C", str(home)], check=True)
    for rel, when in stamps.items():
        assert int((home / "tree" / rel).stat().st_mtime) == when, rel
    assert int((home / "tree").stat().st_mtime) == 1_600_000_300
    sent = rig.live.stats()["by_method"]
    # Within the 5 s delay nothing changes the server: no directory, file or date yet.
    assert not {m: n for m, n in sent.items() if m in ("PUT", "POST", "DELETE")}, sent
    r = cli("sync", str(rig.mount.path))
    assert r.returncode == 0, r.stdout + r.stderr
    for rel, body in files.items():
        assert server_md5(rig, f"tree/{rel}") == md5(body), rel
    for rel, when in {**stamps, "": 1_600_000_300}.items():
        kept = server_node_prop(rig, f"tree/{rel}".rstrip("/"), props.MTIME) or ""
        assert kept.split(" ")[0] == str(when * 10**9), rel
