"""The concurrency torture test: several processes, a handful of files, a few thousand
operations through a real mount, on arc and on vault (docs/reliability.md).

Six worker processes (tests/mount/torture_worker.py), 500 operations each, open, append,
pwrite, truncate, rename over open files, unlink open files and read, at random.
Afterwards:

* the daemon is alive and answered every operation within ``--timeout``;
* no reader ever saw a torn, shifted or foreign record;
* every line appended by a close that returned 0 is on the server exactly once, and
  every worker's region holds the content of its last acknowledged close (the rules of
  docs/semantics.md, "Several handles on one file");
* every surviving file reads the same through the mount as from the server, and no
  upload is left pending.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.emulator_util import TOKEN, LiveEmulator, start_live_emulator
from tests.mount.torture_worker import CHAOS, REGION, bad_records
from tests.mount_util import Mount, emulator_mount, is_mounted, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse, pytest.mark.semantics("Several handles on one file")]
TIMEOUT = 5.0
WORKERS = 6
OPS = 500
HOME = {"arc": "home/alice", "vault": "alice"}
WORKER = Path(__file__).with_name("torture_worker.py")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveEmulator, Mount]]:
    tmp = tmp_path_factory.mktemp("torture")
    (tmp / "emu").mkdir()
    live = start_live_emulator(tmp / "emu")
    m = emulator_mount(tmp, live.url, TOKEN, "--timeout", str(TIMEOUT), "--meta-ttl", "1")
    yield live, m
    m.unmount()
    live.stop()
    assert m.proc.returncode == 0, m.log_text()[-5000:]
    assert "Traceback" not in m.log_text(), m.log_text()[-5000:]
    assert list((tmp / "cache" / "staging").iterdir()) == []


def server(live: LiveEmulator, service: str, name: str) -> bytes | None:
    r = httpx2.get(
        f"{live.url}/{service}/files/{HOME[service]}/torture/{name}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
        follow_redirects=True,
    )
    if r.status_code == 404:
        return None
    if r.status_code == 204:
        return b""
    assert r.status_code == 200, r.text
    return r.content


@pytest.mark.parametrize("service", ["arc", "vault"])
def test_many_processes_on_a_handful_of_files(
    rig: tuple[LiveEmulator, Mount], service: str
) -> None:
    live, mount = rig
    d = mount.path / service / HOME[service] / "torture"
    d.mkdir()
    (d / "regions").write_bytes(bytes(REGION * WORKERS))
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(d),
                str(w),
                str(1000 * w + len(service)),
                str(OPS),
                str(TIMEOUT),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WORKERS)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert is_mounted(mount.path), mount.log_text()[-5000:]
    assert mount.proc.poll() is None, mount.log_text()[-5000:]

    problems = [f"worker {w}: {e}" for w, r in enumerate(results) for e in r["errors"]]
    slow = [f"worker {w}: {s}" for w, r in enumerate(results) for s in r["slow"]]
    assert problems == [], problems[:20]
    assert slow == [], slow[:20]
    ops = Counter[str]()
    for r in results:
        ops.update(r["counts"])
    assert sum(ops.values()) == WORKERS * OPS
    print(
        f"{service}: {sum(ops.values())} operations by {WORKERS} processes in "
        f"{time.monotonic() - started:.1f} s: {dict(sorted(ops.items()))}"
    )
    assert min(ops.values()) > 50, ops  # every kind of operation ran many times

    # Every acknowledged append is on the server exactly once.
    log = server(live, service, "log")
    assert log is not None
    lines = Counter(log.decode().split())
    acked = [line for r in results for line in r["log_acked"]]
    assert acked
    assert [line for line in acked if lines[line] != 1] == []
    assert all(n == 1 for n in lines.values())

    # Each region holds its worker's last acknowledged write.
    regions = server(live, service, "regions")
    assert regions is not None
    assert len(regions) == REGION * WORKERS
    for w, r in enumerate(results):
        if r["region_last"] is not None:
            assert regions[w * REGION : (w + 1) * REGION].decode() == r["region_last"], w

    # The mount and the server agree on every surviving file, which is well-formed.
    for name in CHAOS:
        mounted = (d / name).read_bytes() if (d / name).exists() else None
        held = server(live, service, name)
        assert mounted == held, name
        if held is not None:
            assert bad_records(held) == [], name
    status = subprocess.run(
        [sys.executable, "-m", "canfarfs", "status", str(mount.path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["uploads"] == []
