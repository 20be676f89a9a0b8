"""End to end: job arrays (docs/sessions.md, *Job arrays*) through a real mount of the
local platform, driven by the tools a user has: ``cp``, ``cat >``, ``cat``, ``ls``,
``readlink``, ``touch``, ``rmdir``. The replicas run as local processes that see the
local arc tree at ``/arc``.
"""

from __future__ import annotations

import errno
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount_util import Mount, needs_fuse, ok, start_mount, wait_until

pytestmark = [needs_fuse, pytest.mark.fuse]
USER = "alice"
IMAGE = "images.canfar.net/skaha/astroml:latest"
HOME = f"/arc/home/{USER}"
#: One output per input, appended (so an input done twice shows twice); replica 3 fails
#: before doing anything while fail-3 exists.
SCRIPT = f"""#!/bin/sh
[ "$REPLICA_ID" = 3 ] && [ -e {HOME}/fail-3 ] && {{ echo "replica 3 told to fail"; exit 1; }}
while read -r f; do
  echo "$REPLICA_ID $(cat "$f")" >> {HOME}/out/$(basename "$f" .fits).out
done < "$INPUTS_FILE"
echo "replica $REPLICA_ID of $REPLICA_COUNT: $(wc -l < "$INPUTS_FILE") inputs"
"""


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    base = tmp_path_factory.mktemp("arrays")
    env = dict(os.environ, CANFARFS_USER=USER, CANFARFS_SKAHA_PENDING_SECONDS="0.3")
    m = start_mount(
        base / "mnt",
        ["--local", str(base / "data"), "--cache-dir", str(base / "cache"), "--meta-ttl", "1"],
        env=env,
    )
    assert (m.path / "sessions" / "arrays").is_dir(), m.log_text()
    yield m
    m.unmount()
    assert m.proc.returncode == 0, m.log_text()
    assert "Traceback" not in m.log_text()


def head(array: Path) -> str:
    return (array / "status").read_text().splitlines()[0]


def wait_head(array: Path, want: str, timeout: float = 30.0) -> None:
    """Wait for the array's status line; on timeout, show its status and logs."""
    deadline = time.monotonic() + timeout
    while head(array) != want:
        if time.monotonic() > deadline:
            status, logs = (array / "status").read_text(), (array / "logs").read_text()
            pytest.fail(f"status never read {want!r}:\n{status}\nlogs:\n{logs}")
        time.sleep(0.2)


def test_an_array_over_40_inputs_fails_retries_and_completes(mount: Mount, tmp_path: Path) -> None:
    """8 replicas over 40 inputs: every input processed exactly once; the status counts
    match the sessions; the failed replica is rerun by ``retry`` with only its share."""
    m, sess = mount.path, mount.path / "sessions"
    home = m / "arc" / "home" / USER
    local = tmp_path / "raw"
    local.mkdir()
    for i in range(40):
        (local / f"img{i:02}.fits").write_text(f"frame {i}\n")
    (tmp_path / "calibrate.sh").write_text(SCRIPT)
    ok(f"mkdir -p {home}/raw {home}/bin {home}/out", tmp_path)
    ok(f"cp raw/*.fits {home}/raw/ && cp calibrate.sh {home}/bin/", tmp_path)
    ok(f"touch {home}/fail-3", tmp_path)
    ok(
        f"cat > {sess}/calib.yaml <<'EOF'\n"
        f"name: calib\nimage: {IMAGE}\nkind: headless\ncmd: /bin/sh\n"
        f"args: {HOME}/bin/calibrate.sh\n"
        f"replicas: 8\ninputs: {HOME}/raw/*.fits\nsplit: chunk\nEOF",
        tmp_path,
    )
    ids = (sess / "calib.yaml.ids").read_text().split()
    assert len(ids) == 8
    array = sess / "arrays" / "calib"
    wait_head(array, "8 total: 7 Completed, 1 Failed")

    # The counts match the sessions' own status files.
    by_session = Counter((sess / sid / "status").read_text().strip() for sid in ids)
    assert by_session == Counter({"Completed": 7, "Failed": 1})
    assert ok("ls", array).split() == sorted(
        ["failed", "ids", "logs", "retry", "status", *map(str, range(1, 9))]
    )
    assert ok("readlink 3", array).strip() == f"../../{ids[2]}"
    assert ok("cat 3/status", array) == "Failed\n"  # the link leads to the session
    share_3 = [f"{HOME}/raw/img{i:02}.fits" for i in range(10, 15)]  # chunk: 5 each
    assert (array / "failed").read_text().splitlines() == share_3
    logs = (array / "logs").read_text().splitlines()
    assert "[3] replica 3 told to fail" in logs
    assert "[1] replica 1 of 8: 5 inputs" in logs

    ok(f"rm {home}/fail-3 && touch {array}/retry", tmp_path)
    wait_head(array, "8 total: 8 Completed")
    all_ids = (array / "ids").read_text().split()
    assert len(all_ids) == 9
    assert set(ids) < set(all_ids)
    assert "replica 3: Completed" in (array / "status").read_text()
    assert (array / "failed").read_text() == ""

    def outputs() -> dict[str, str]:
        return {p.name: p.read_text() for p in (home / "out").iterdir()}

    wait_until(lambda: len(outputs()) == 40, timeout=10)  # the mount sees arc within its TTL
    for i in range(40):  # each input exactly once, by the replica whose share it is
        assert outputs()[f"img{i:02}.out"] == f"{i // 5 + 1} frame {i}\n"
    manifests = sorted(p.name for p in (home / ".canfarfs" / "arrays").iterdir())
    assert len(manifests) == 1
    assert manifests[0].startswith("calib-")
    ok(f"rmdir {array}", tmp_path)


def test_rmdir_ends_a_running_array(mount: Mount, tmp_path: Path) -> None:
    m, sess = mount.path, mount.path / "sessions"
    home = m / "arc" / "home" / USER
    ok(f"mkdir -p {home}/slow && touch {home}/slow/a {home}/slow/b {home}/slow/c", tmp_path)
    (sess / "slow.yaml").write_text(
        f"name: slow\nimage: {IMAGE}\nkind: headless\ncmd: /bin/sleep\nargs: ['300']\n"
        f"replicas: 3\ninputs: {HOME}/slow/*\n"
    )
    ids = (sess / "slow.yaml.ids").read_text().split()
    array = sess / "arrays" / "slow"
    wait_head(array, "3 total: 3 Running")
    ok(f"rmdir {array}", tmp_path)
    assert not array.exists()
    wait_until(lambda: not any((sess / sid).exists() for sid in ids))


def test_a_spec_whose_globs_match_nothing_launches_nothing(mount: Mount) -> None:
    """close() fails with EINVAL (bash ignores a redirection's close error, so Python's
    open does the write), ``.error`` says why, and nothing is launched."""
    sess = mount.path / "sessions"
    spec = f"name: empty\nimage: {IMAGE}\ncmd: /bin/true\nreplicas: 4\n"
    with pytest.raises(OSError) as info:
        (sess / "empty.yaml").write_text(spec + f"inputs: {HOME}/nothing-here/*.fits\n")
    assert info.value.errno == errno.EINVAL
    assert "nothing matches" in (sess / "empty.yaml.error").read_text()
    with pytest.raises(OSError) as info:
        (sess / "empty.yaml.ids").read_text()
    assert info.value.errno == errno.EINVAL
    assert not (sess / "arrays" / "empty").exists()
    with pytest.raises(OSError) as info:
        (sess / "outside.yaml").write_text(
            spec.replace("empty", "outside") + "inputs: /vault/x/*\n"
        )
    assert info.value.errno == errno.EINVAL
    assert "under /arc/" in (sess / "outside.yaml.error").read_text()
