"""One file, many hands, through a real mount (docs/semantics.md, "Several handles on
one file"): readers and writers in several processes share one state per file, a rename
or unlink leaves open handles their bytes, and no failure takes the mount down.

Each reproduction of the issue "One file, many hands" is a test here; the server's
copy is read straight from the emulator, never through the mount.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.emulator_util import TOKEN, LiveEmulator, start_live_emulator
from tests.mount_util import Mount, emulator_mount, errno_of, is_mounted, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse, pytest.mark.semantics("Several handles on one file")]
TIMEOUT = 5.0
HOME = {"arc": "home/alice", "vault": "alice"}
SERVICES = ["arc", "vault"]


@dataclass
class Rig:
    live: LiveEmulator
    mount: Mount
    cache: Path

    def dir(self, service: str) -> Path:
        return self.mount.path / service / HOME[service]

    def server_bytes(self, service: str, name: str) -> bytes | None:
        r = httpx2.get(
            f"{self.live.url}/{service}/files/{HOME[service]}/{name}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
            follow_redirects=True,
        )
        if r.status_code == 404:
            return None
        if r.status_code == 204:  # an empty file (the services answer so)
            return b""
        assert r.status_code == 200, r.text
        return r.content

    def faults(self, **plan: object) -> None:
        self.live.faults(**plan)

    def clear(self) -> None:
        self.live.clear_faults()

    def alive(self) -> bool:
        return (
            is_mounted(self.mount.path)
            and self.mount.proc.poll() is None
            and os.path.isdir(self.mount.path / "arc")
        )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("many-hands")
    (tmp / "emu").mkdir()
    live = start_live_emulator(tmp / "emu")
    m = emulator_mount(tmp, live.url, TOKEN, "--timeout", str(TIMEOUT), "--meta-ttl", "1")
    r = Rig(live, m, tmp / "cache")
    yield r
    r.clear()
    m.unmount()
    log = m.log_text()
    live.stop()
    assert m.proc.returncode == 0, log
    assert "Traceback" not in log, log
    # Staging is collected: a clean unmount leaves no staged file behind.
    assert sorted(p.name for p in (tmp / "cache" / "staging").iterdir()) == []


@pytest.fixture(scope="module")
def second_mount(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Another mount of the same emulator, with its own cache: another machine."""
    m = emulator_mount(
        tmp_path_factory.mktemp("second"),
        rig.live.url,
        TOKEN,
        "--timeout",
        str(TIMEOUT),
        "--meta-ttl",
        "1",
    )
    yield m.path
    m.unmount()
    assert m.proc.returncode == 0, m.log_text()


@pytest.fixture(params=SERVICES)
def service(request: pytest.FixtureRequest, rig: Rig) -> Iterator[str]:
    yield str(request.param)
    rig.clear()
    assert rig.alive(), rig.mount.log_text()[-4000:]


def sh(cmd: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def py(code: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def in_parallel(code: str, args: list[str], cwd: Path, timeout: float = 120) -> list[str]:
    """Run ``code`` in one Python process per argument, at once; each one's stdout
    (each must exit 0)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), arg],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arg in args
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err
        outs.append(out.strip())
    return outs


# -- renames and unlinks of open files ------------------------------------------------------


def test_a_reader_keeps_its_bytes_when_another_file_is_renamed_over_it(
    rig: Rig, service: str
) -> None:
    d = rig.dir(service)
    (d / "ra").write_bytes(b"A" * 5000)
    (d / "rb").write_bytes(b"B" * 7000)
    r = py(
        """
        import os
        fd = os.open('rb', os.O_RDONLY)
        os.rename('ra', 'rb')
        data = os.pread(fd, 10000, 0)
        os.close(fd)
        print(len(data), set(data) == {ord('B')})
    """,
        d,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["7000", "True"]
    assert rig.alive()
    assert (d / "rb").read_bytes() == b"A" * 5000
    assert not (d / "ra").exists()
    assert rig.server_bytes(service, "rb") == b"A" * 5000


def test_a_reader_keeps_reading_a_big_file_renamed_over_while_it_streams(
    rig: Rig, service: str
) -> None:
    d = rig.dir(service)
    old = os.urandom(6 * 1024 * 1024)
    (d / "big-old").write_bytes(old)
    (d / "big-new").write_bytes(b"n" * 100)
    with open(d / "big-old", "rb", buffering=0) as f:
        head = f.read(4096)
        os.rename(d / "big-new", d / "big-old")
        rest = f.read()
    assert head + rest == old
    assert (d / "big-old").read_bytes() == b"n" * 100


@pytest.mark.parametrize("cached", [True, False], ids=["read-before", "never-read"])
def test_an_unlinked_open_file_stays_readable_until_closed(
    rig: Rig, service: str, cached: bool
) -> None:
    d = rig.dir(service)
    data = os.urandom(300_000)
    (d / "gone.bin").write_bytes(data)
    fd = os.open(d / "gone.bin", os.O_RDONLY)
    try:
        if cached:
            assert os.pread(fd, 10, 0) == data[:10]
        os.unlink(d / "gone.bin")
        assert not (d / "gone.bin").exists()
        assert os.pread(fd, len(data) + 10, 0) == data
        assert os.fstat(fd).st_size == len(data)
    finally:
        os.close(fd)
    assert rig.server_bytes(service, "gone.bin") is None


def test_a_file_written_then_unlinked_while_open_reads_back_and_uploads_nothing(
    rig: Rig, service: str
) -> None:
    d = rig.dir(service)
    fd = os.open(d / "scratch.tmp", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"temporary " * 100)
        os.unlink(d / "scratch.tmp")
        os.write(fd, b"more")
        assert os.pread(fd, 2000, 0) == b"temporary " * 100 + b"more"
    finally:
        os.close(fd)
    assert rig.server_bytes(service, "scratch.tmp") is None
    assert "scratch.tmp" not in os.listdir(d)


def test_an_open_writer_renamed_away_uploads_under_the_new_name(rig: Rig, service: str) -> None:
    d = rig.dir(service)
    (d / "w-old").write_bytes(b"x" * 10)
    with open(d / "w-old", "r+b") as f:
        f.write(b"y" * 20)
        os.rename(d / "w-old", d / "w-new")
        f.write(b"z")
    assert rig.server_bytes(service, "w-new") == b"y" * 20 + b"z"
    assert rig.server_bytes(service, "w-old") is None


# -- several writers on one file ------------------------------------------------------------


@pytest.mark.semantics("Freshness")
def test_across_two_mounts_the_last_close_wins_and_the_other_sees_it_after_the_ttl(
    rig: Rig, second_mount: Path, service: str
) -> None:
    here = rig.dir(service)
    there = second_mount / service / HOME[service]
    (here / "two.txt").write_text("original\n")
    time.sleep(1.2)  # the other mount's negative entry for the name expires
    with open(here / "two.txt", "r+") as a, open(there / "two.txt", "r+") as b:
        assert b.read() == "original\n"
        a.write("from A!!\n")  # as long as the original
        b.seek(0)
        b.write("from B, longer\n")
        a.close()
        assert rig.server_bytes(service, "two.txt") == b"from A!!\n"
        b.close()
    assert rig.server_bytes(service, "two.txt") == b"from B, longer\n"
    time.sleep(1.2)  # the metadata TTL (--meta-ttl 1) and the kernel's 1 s
    assert (here / "two.txt").read_text() == "from B, longer\n"


def test_two_appending_loops_on_one_file_lose_no_line_and_keep_the_mount(
    rig: Rig, service: str
) -> None:
    d = rig.dir(service)
    r = sh(
        "echo hi > F && for t in A B; do (for i in $(seq 60); do echo $t$i >> F || "
        "echo FAIL $t$i >&2; done) & done; wait",
        d,
    )
    assert r.returncode == 0, r.stderr
    assert "FAIL" not in r.stderr, r.stderr
    assert rig.alive()
    expected = {"hi"} | {f"{t}{i}" for t in "AB" for i in range(1, 61)}
    lines = (d / "F").read_text().split()
    assert sorted(lines) == sorted(expected)
    server = rig.server_bytes(service, "F")
    assert server is not None
    assert sorted(server.decode().split()) == sorted(expected)


def test_two_tee_loops_every_acknowledged_append_reaches_the_server(rig: Rig, service: str) -> None:
    d = rig.dir(service)
    r = sh(
        "for t in A B; do (for i in $(seq 50); do echo $t$i | tee -a teed >/dev/null "
        "|| echo FAIL >&2; done) & done; wait",
        d,
    )
    assert r.returncode == 0, r.stderr
    assert "FAIL" not in r.stderr, r.stderr
    server = rig.server_bytes(service, "teed")
    assert server is not None
    assert sorted(server.decode().split()) == sorted(f"{t}{i}" for t in "AB" for i in range(1, 51))


def test_two_processes_writing_disjoint_halves_both_reach_the_server(
    rig: Rig, service: str
) -> None:
    d = rig.dir(service)
    half = 1024 * 1024
    (d / "halves.bin").write_bytes(b"\0" * 2 * half)
    code = f"""
        import os, sys, time
        fd = os.open('halves.bin', os.O_RDWR)
        which = int(sys.argv[1])
        os.pwrite(fd, bytes([65 + which]) * {half}, which * {half})
        time.sleep(1)
        os.close(fd)
        print('closed')
    """
    assert in_parallel(code, ["0", "1"], d) == ["closed", "closed"]
    expected = b"A" * half + b"B" * half
    assert rig.server_bytes(service, "halves.bin") == expected
    assert (d / "halves.bin").read_bytes() == expected


def test_open_append_close_loops_in_two_processes_never_fail_a_close(
    rig: Rig, service: str
) -> None:
    d = rig.dir(service)
    code = """
        import os, sys
        tag = sys.argv[1]
        failed = 0
        for i in range(60):
            fd = os.open('appended', os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, f'{tag}{i:03d}'.encode() + b'.' * 4000 + b'\\n')
            try:
                os.close(fd)
            except OSError as exc:
                failed += 1
                print('close failed', exc, file=sys.stderr)
        print(failed)
    """
    assert in_parallel(code, ["A", "B"], d) == ["0", "0"]  # no close failed
    server = rig.server_bytes(service, "appended")
    assert server is not None
    tags = sorted(line[:4] for line in server.decode().splitlines())
    assert tags == sorted(f"{t}{i:03d}" for t in "AB" for i in range(60))


@pytest.mark.semantics("Freshness")
def test_tail_f_follows_a_file_appended_on_the_mount(rig: Rig, service: str) -> None:
    d = rig.dir(service)
    (d / "grow.log").write_text("line0\n")
    out = d.parent / f"tail-{service}.out"
    with open(rig.mount.path.parent / f"tail-{service}.out", "w") as sink:
        tail = subprocess.Popen(
            ["tail", "-n", "+1", "-s", "0.2", "-f", str(d / "grow.log")],
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            for i in range(1, 6):
                time.sleep(0.3)
                assert sh(f"/bin/echo line{i} >> grow.log", d).returncode == 0
            deadline = time.monotonic() + 10
            seen = ""
            while time.monotonic() < deadline:
                seen = (rig.mount.path.parent / f"tail-{service}.out").read_text()
                if "line5" in seen:
                    break
                time.sleep(0.2)
            assert tail.poll() is None, tail.stderr.read() if tail.stderr else ""
        finally:
            tail.terminate()
            _, err = tail.communicate(timeout=10)
    assert seen.split() == [f"line{i}" for i in range(6)], (seen, err)
    assert "Input/output error" not in err
    del out


# -- small errnos and attributes -------------------------------------------------------------


@pytest.mark.semantics("Errno table")
def test_truncate_beyond_any_file_size_is_efbig(rig: Rig, service: str) -> None:
    d = rig.dir(service)
    (d / "huge").write_bytes(b"x")
    with pytest.raises(OSError) as e:
        os.truncate(d / "huge", 999_999_999_999_999)
    assert e.value.errno == errno.EFBIG
    assert (d / "huge").read_bytes() == b"x"


@pytest.mark.semantics("Not supported")
def test_mknod_makes_regular_files_and_refuses_the_rest_with_eperm(rig: Rig, service: str) -> None:
    d = rig.dir(service)
    os.mknod(d / "made", stat.S_IFREG | 0o600)
    assert (d / "made").stat().st_size == 0
    assert rig.server_bytes(service, "made") == b""
    with pytest.raises(OSError) as e:
        os.mkfifo(d / "fifo")
    assert e.value.errno == errno.EPERM
    with pytest.raises(OSError) as e:
        os.mknod(d / "dev", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    assert e.value.errno == errno.EPERM


def test_ftruncate_then_close_shows_the_new_date_at_once(rig: Rig, service: str) -> None:
    d = rig.dir(service)
    (d / "dated").write_bytes(b"x" * 100)
    time.sleep(1.2)
    before = time.time()
    fd = os.open(d / "dated", os.O_RDWR)
    os.ftruncate(fd, 10)
    os.close(fd)
    st = os.stat(d / "dated")
    assert st.st_size == 10
    assert st.st_mtime >= before - 1.0


@pytest.mark.semantics("Freshness")
def test_a_directory_date_moves_when_entries_come_and_go(rig: Rig, service: str) -> None:
    d = rig.dir(service) / "dated-dir"
    d.mkdir()
    first = d.stat().st_mtime
    time.sleep(1.2)
    (d / "child").write_text("x")
    time.sleep(1.1)  # past the kernel's attribute cache
    second = d.stat().st_mtime
    assert second > first
    time.sleep(1.2)
    (d / "child").unlink()
    time.sleep(1.1)
    assert d.stat().st_mtime > second


# -- the POSIX table of docs/reliability.md ---------------------------------------------------


@pytest.mark.semantics("Errno table")
def test_the_posix_table_holds(rig: Rig, service: str) -> None:
    """Each row of reliability.md's POSIX table that is not a test of its own above."""
    d = rig.dir(service) / "posix"
    d.mkdir()
    (d / "f").write_bytes(b"0123456789")
    # open
    assert errno_of(os.open, d / "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY) == errno.EEXIST
    assert errno_of(os.open, d / "missing", os.O_RDONLY) == errno.ENOENT
    assert errno_of(os.open, d / "f", os.O_RDONLY | os.O_DIRECTORY) == errno.ENOTDIR
    fd = os.open(d / "f", os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert (d / "f").stat().st_size == 0
    fd = os.open(d / "new", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.write(fd, b"x")
    os.close(fd)
    assert rig.server_bytes(service, "posix/new") == b"x"
    # truncate
    os.truncate(d / "new", 5)
    assert (d / "new").read_bytes() == b"x\0\0\0\0"
    assert errno_of(os.truncate, d / "new", -1) == errno.EINVAL
    # unlink
    assert errno_of(os.unlink, d / "missing") == errno.ENOENT
    (d / "sub").mkdir()
    assert errno_of(os.unlink, d / "sub") in (errno.EISDIR, errno.EPERM)
    # rename
    os.rename(d / "new", d / "renamed")
    assert rig.server_bytes(service, "posix/renamed") == b"x\0\0\0\0"
    assert errno_of(os.rename, d / "sub", d / "sub" / "inner") == errno.EINVAL
    assert errno_of(os.rename, d / "renamed", d / "sub") == errno.EISDIR
    assert errno_of(os.rename, d / "sub", d / "renamed") == errno.ENOTDIR
    (d / "full").mkdir()
    (d / "full" / "x").write_bytes(b"")
    assert errno_of(os.rename, d / "sub", d / "full") == errno.ENOTEMPTY
    other = "vault/alice" if service == "arc" else "arc/home/alice"
    assert errno_of(os.rename, d / "renamed", rig.mount.path / other / "x") == errno.EXDEV
    # mkdir and rmdir
    assert errno_of(os.mkdir, d / "sub") == errno.EEXIST
    assert errno_of(os.rmdir, d / "full") == errno.ENOTEMPTY
    assert errno_of(os.rmdir, d / "renamed") == errno.ENOTDIR
    assert errno_of(os.rmdir, d / "missing") == errno.ENOENT
    os.rmdir(d / "sub")
    # symlink and link
    os.symlink("renamed", d / "lnk")
    assert os.readlink(d / "lnk") == "renamed"
    assert (d / "lnk").read_bytes() == b"x\0\0\0\0"
    assert errno_of(os.symlink, "renamed", d / "lnk") == errno.EEXIST
    assert errno_of(os.link, d / "renamed", d / "hard") == errno.EPERM


# -- a background task's failure never takes the mount down ---------------------------------


def test_a_download_cut_off_fails_the_read_and_the_mount_answers(rig: Rig, service: str) -> None:
    """The arc stream and vault's ranged fetches run as background tasks."""
    d = rig.dir(service)
    data = os.urandom(3_000_000)
    (d / "cut-off.bin").write_bytes(data)
    rig.faults(outage_seconds=3600, methods=["GET"], path_prefix="/")
    with pytest.raises(OSError) as e:
        (d / "cut-off.bin").read_bytes()
    assert e.value.errno in (errno.EIO, errno.ETIMEDOUT)
    rig.clear()
    assert rig.alive()
    assert (d / "cut-off.bin").read_bytes() == data


def test_a_download_for_update_that_times_out_fails_the_open_only(rig: Rig, service: str) -> None:
    """Opening an existing file for update prefetches it in the background."""
    d = rig.dir(service)
    (d / "slow.bin").write_bytes(b"s" * 200_000)
    rig.faults(latency=TIMEOUT * 3, methods=["GET"], path_prefix="/")
    start = time.monotonic()
    with pytest.raises(OSError) as e:
        open(d / "slow.bin", "r+b").close()
    assert e.value.errno in (errno.EIO, errno.ETIMEDOUT)
    assert time.monotonic() - start < 4 * TIMEOUT
    rig.clear()
    assert rig.alive()
    with open(d / "slow.bin", "r+b") as f:
        f.write(b"S")
    assert rig.server_bytes(service, "slow.bin") == b"S" + b"s" * 199_999


def test_a_streaming_upload_cut_off_falls_back_and_close_succeeds(rig: Rig) -> None:
    """A new arc file past 8 MiB streams its upload in a background task."""
    d = rig.dir("arc")
    data = os.urandom(12 * 1024 * 1024)
    rig.faults(drop_next=1, drop_after=1, methods=["PUT"], path_prefix="/")
    with open(d / "streamed.bin", "wb") as f:
        for i in range(0, len(data), 1024 * 1024):
            f.write(data[i : i + 1024 * 1024])
    assert rig.alive()
    assert rig.server_bytes("arc", "streamed.bin") == data


@pytest.mark.semantics("Freshness")
def test_tail_f_follows_a_file_grown_on_the_server(rig: Rig, service: str) -> None:
    """A job (or vcp, or the portal) appends to a file: an open reader at its end sees
    the growth once the metadata TTL has passed."""
    d = rig.dir(service)
    lines: list[str] = []

    def put() -> None:
        body = "".join(f"{line}\n" for line in lines).encode()
        if service == "arc":
            r = httpx2.put(
                f"{rig.live.url}/arc/files/{HOME['arc']}/job.log",
                content=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
            )
            assert r.status_code in (200, 201), r.text
        else:  # vault takes bytes through a negotiated transfer: write them from "elsewhere"
            other = rig.mount.path.parent / "elsewhere.log"
            other.write_bytes(body)
            r = subprocess.run(["cp", str(other), str(d / "job.log.tmp")], check=False)
            assert r.returncode == 0
            os.rename(d / "job.log.tmp", d / "job.log")

    lines.append("started")
    put()
    out = rig.mount.path.parent / f"tail-server-{service}.out"
    with open(out, "w") as sink:
        tail = subprocess.Popen(
            ["tail", "-n", "+1", "-s", "0.3", "-F", str(d / "job.log")],
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            for i in range(1, 4):
                time.sleep(0.5)
                lines.append(f"step {i}")
                put()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and "step 3" not in out.read_text():
                time.sleep(0.2)
        finally:
            tail.terminate()
            _, err = tail.communicate(timeout=10)
    seen = [line for line in out.read_text().splitlines() if line]
    assert seen[0] == "started", (seen, err)
    assert seen[-1] == "step 3", (seen, err)
    assert "Input/output error" not in err


def test_a_mount_removes_what_an_earlier_run_left_and_keeps_what_is_pending(
    rig: Rig, tmp_path: Path
) -> None:
    """Orphans of an earlier run (a staged file with no journal, a journal of bytes
    already uploaded, cached copies) are removed at mount; pending bytes are uploaded."""
    cache = tmp_path / "cache"
    staging, data = cache / "staging", cache / "data"
    staging.mkdir(parents=True)
    data.mkdir()
    (staging / ("0" * 32)).with_suffix(".data").write_bytes(b"orphan")
    (staging / ("1" * 32)).with_suffix(".data").write_bytes(b"clean")
    (staging / ("1" * 32)).with_suffix(".json").write_text(
        '{"service": "arc", "path": "home/alice/clean", "dirty": false}'
    )
    (staging / ("2" * 32)).with_suffix(".data").write_bytes(b"pending bytes")
    (staging / ("2" * 32)).with_suffix(".json").write_text(
        '{"service": "arc", "path": "home/alice/pending-at-start", "dirty": true, "new": true}'
    )
    (staging / ("3" * 32)).with_suffix(".tmp").write_text("{")
    (data / ("4" * 32)).write_bytes(b"a cached copy nobody indexes")
    m = emulator_mount(tmp_path, rig.live.url, TOKEN)  # its cache: tmp_path / "cache"
    try:
        assert sorted(p.name for p in staging.iterdir()) == []
        assert list(data.iterdir()) == []
        assert rig.server_bytes("arc", "pending-at-start") == b"pending bytes"
        assert rig.server_bytes("arc", "clean") is None
    finally:
        m.unmount()
    assert m.proc.returncode == 0, m.log_text()
    assert "removed 5 staged or cached files" in m.log_text()
