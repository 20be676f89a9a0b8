"""Dates through the mount (docs/semantics.md, *Dates*): utimensat sets a file's date,
kept in a node property while the bytes are the ones it dates, so `rsync -a` twice
transfers nothing the second time, `cp -p` and `tar -x` keep dates, `find -newer` and
`make` see the source's dates; a file rewritten elsewhere shows the server's date."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.emulator_util import TOKEN, start_live_emulator
from tests.mount_util import Mount, emulator_mount, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse, pytest.mark.semantics("Dates")]
HOME = {"arc": "home/alice", "vault": "alice"}
OLD = 978_307_200  # 2001-01-01T00:00:00Z


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Mount]]:
    tmp = tmp_path_factory.mktemp("dates")
    (tmp / "emu").mkdir()
    live = start_live_emulator(tmp / "emu")
    m = emulator_mount(tmp, live.url, TOKEN, "--meta-ttl", "1")
    yield live.url, m
    m.unmount()
    live.stop()
    assert m.proc.returncode == 0, m.log_text()


@pytest.fixture(params=["arc", "vault"])
def home(request: pytest.FixtureRequest, rig: tuple[str, Mount]) -> Path:
    d = rig[1].path / request.param / HOME[request.param] / f"d-{request.node.name[:30]}"
    d.mkdir()
    return d


def sh(cmd: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def private_tree(root: Path) -> Path:
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(4):
        (src / f"f{i}.txt").write_text(f"file {i}\n")
    (src / "sub" / "deep.bin").write_bytes(os.urandom(300_000))
    sh("chmod -R go-rwx . && touch -d 2001-01-01T00:00:00Z f0.txt sub/deep.bin", src)
    return src


def test_touch_d_sets_the_date_and_the_server_keeps_it(home: Path) -> None:
    f = home / "dated.txt"
    f.write_text("x")
    assert sh("touch -d 2001-01-01T00:00:00Z dated.txt", home).returncode == 0
    assert os.stat(f).st_mtime == OLD
    time.sleep(1.2)  # past the metadata TTL: the date comes back from the server
    assert os.stat(f).st_mtime == OLD
    os.utime(f, ns=(OLD * 10**9 + 123_456_789, OLD * 10**9 + 123_456_789))
    assert os.stat(f).st_mtime_ns == OLD * 10**9 + 123_456_789


def test_rsync_a_twice_transfers_nothing_the_second_time(home: Path, tmp_path: Path) -> None:
    src = private_tree(tmp_path)
    first = sh(f"rsync -a {src}/ synced/", home)
    assert first.returncode == 0, first.stderr
    assert os.stat(home / "synced" / "f0.txt").st_mtime == OLD
    again = sh(f"rsync -a --itemize-changes {src}/ synced/", home)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    time.sleep(1.2)  # and after the metadata TTL, from the server's listing
    again = sh(f"rsync -a --itemize-changes {src}/ synced/", home)
    assert again.stdout == ""


def test_cp_p_and_tar_keep_dates_and_find_newer_sees_them(home: Path, tmp_path: Path) -> None:
    src = private_tree(tmp_path)
    assert sh(f"cp -p {src}/f0.txt kept.txt", home).returncode == 0
    assert os.stat(home / "kept.txt").st_mtime == OLD
    r = sh(
        f"tar -C {src} -cf {tmp_path}/t.tar . && mkdir untar && tar -xf {tmp_path}/t.tar -C untar",
        home,
    )
    assert r.returncode == 0, r.stderr
    assert os.stat(home / "untar" / "sub" / "deep.bin").st_mtime == OLD
    (home / "stamp").write_text("now")
    newer = sh("find untar -type f -newer stamp", home).stdout.split()
    assert newer == []
    older = sorted(sh("find untar -type f ! -newer stamp", home).stdout.split())
    assert "untar/f0.txt" in older


def test_a_file_rewritten_elsewhere_shows_the_servers_date(rig: tuple[str, Mount]) -> None:
    url, m = rig
    f = m.path / "arc" / "home" / "alice" / "elsewhere.txt"
    f.write_text("one")
    os.utime(f, (OLD, OLD))
    assert os.stat(f).st_mtime == OLD
    r = httpx2.put(
        f"{url}/arc/files/home/alice/elsewhere.txt",
        content=b"two, from vcp",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert r.status_code in (200, 201)
    time.sleep(2.2)  # the metadata TTL and the kernel's attribute cache
    st = os.stat(f)
    assert st.st_size == len("two, from vcp")
    assert st.st_mtime > time.time() - 60


def test_writing_after_setting_a_date_dates_the_file_now(home: Path) -> None:
    f = home / "rewritten.txt"
    f.write_text("x")
    os.utime(f, (OLD, OLD))
    with open(f, "a") as out:
        out.write("more")
    assert os.stat(f).st_mtime > time.time() - 60
