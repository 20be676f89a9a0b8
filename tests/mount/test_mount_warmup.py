"""``canfarfs warmup [--pin] [--evict] PATH…`` through a real mount (docs/semantics.md,
*Warm-up and pinning*): what the command prints, what a read then asks of the server
(the emulator's request counts and the mount's ``fetched``), pins across a remount and
an outage, eviction, and a changed file fetched again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mount_util import Rig, data, home, needs_fuse, start_mount

pytestmark = [needs_fuse, pytest.mark.fuse, pytest.mark.semantics("Warm-up and pinning")]
FILES = {f"raw/f{i}.fits": data(10_000 + i) for i in range(6)} | {
    "raw/sub/deep.fits": data(300_000)
}
TOTAL = sum(len(d) for d in FILES.values())


def canfarfs(rig: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canfarfs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, CANFARFS_USER="alice", COLUMNS="200"),
    )


def status(rig: Rig) -> dict[str, object]:
    doc: dict[str, object] = json.loads((rig.mount.path / ".canfarfs-control").read_bytes())
    return doc


def remount(rig: Rig, *extra: str) -> None:
    rig.mount.unmount()
    rig.mount = start_mount(
        rig.mount.path, [*rig.mount_args, *extra], env=dict(os.environ, CANFARFS_USER="alice")
    )


def make_tree(rig: Rig, service: str) -> Path:
    """The files, written through the mount; then a remount, so the cache is cold."""
    base = home(rig, service)
    for name, payload in FILES.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(payload)
    remount(rig, "--meta-ttl", "60")
    return home(rig, service) / "raw"


def read_all(tree: Path) -> None:
    for name, payload in FILES.items():
        assert (tree.parent / name).read_bytes() == payload


@pytest.mark.parametrize("service", ["arc", "vault"])
def test_warmup_of_a_tree_then_reads_ask_nothing(rig: Rig, service: str) -> None:
    tree = make_tree(rig, service)
    r = canfarfs(rig, "warmup", str(tree))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"warmed up {len(FILES)} file(s)" in r.stdout
    assert f"fetched {len(FILES)} (" in r.stdout
    assert "already cached 0" in r.stdout
    assert "failed 0" in r.stdout
    fetched = status(rig)["fetched"]
    rig.live.reset_stats()
    read_all(tree)
    assert rig.live.stats()["requests"] == 0
    assert status(rig)["fetched"] == fetched == TOTAL
    again = canfarfs(rig, "warmup", str(tree))
    assert again.returncode == 0
    assert f"already cached {len(FILES)}" in again.stdout


def test_a_pinned_tree_survives_a_remount_and_an_outage(rig: Rig) -> None:
    tree = make_tree(rig, "vault")
    r = canfarfs(rig, "warmup", "--pin", str(tree))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"pinned {len(FILES)} file(s)" in r.stdout
    shown = canfarfs(rig, "status", str(rig.mount.path))
    assert f"Pinned: {len(FILES)} file(s)" in shown.stdout
    assert "pinned: vault/alice/raw" in shown.stdout
    assert status(rig)["pinned"] == {
        "paths": ["vault/alice/raw"],
        "files": len(FILES),
        "bytes": TOTAL,
    }
    remount(rig)
    read_all(tree)  # the server's versions are unchanged: the kept copies serve
    assert status(rig)["fetched"] == 0
    rig.mount.unmount()
    rig.faults(outage_seconds=3600)  # the link is cut: the next mount starts without it
    rig.mount = start_mount(
        rig.mount.path, rig.mount_args, env=dict(os.environ, CANFARFS_USER="alice")
    )
    read_all(tree)
    assert sorted(p.name for p in tree.iterdir()) == sorted(
        [n.split("/")[1] for n in FILES if n.count("/") == 1] + ["sub"]
    )
    assert status(rig)["fetched"] == 0


def test_evict_drops_and_unpins(rig: Rig) -> None:
    tree = make_tree(rig, "arc")
    assert canfarfs(rig, "warmup", "--pin", str(tree)).returncode == 0
    r = canfarfs(rig, "warmup", "--evict", str(tree))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"evicted {len(FILES)} cached file(s)" in r.stdout
    assert status(rig)["pinned"] == {"paths": [], "files": 0, "bytes": 0}
    before = status(rig)["fetched"]
    read_all(tree)
    assert status(rig)["fetched"] == before + TOTAL  # fetched again


def test_a_file_changed_on_the_server_is_fetched_again(rig: Rig) -> None:
    tree = make_tree(rig, "arc")
    assert canfarfs(rig, "warmup", str(tree)).returncode == 0
    changed = b"changed elsewhere " * 100
    r = rig.node("arc", "home/alice/raw/f0.fits")  # the node exists on the server
    assert r.status_code == 200
    import httpx2

    from tests.emulator_util import TOKEN

    put = httpx2.put(
        f"{rig.live.url}/arc/files/home/alice/raw/f0.fits",
        content=changed,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert put.status_code in (200, 201), put.text
    again = canfarfs(rig, "warmup", str(tree))
    assert again.returncode == 0, again.stdout
    assert "fetched 1 (" in again.stdout
    assert f"already cached {len(FILES) - 1}" in again.stdout
    rig.live.reset_stats()
    assert (tree / "f0.fits").read_bytes() == changed
    assert rig.live.stats()["requests"] == 0


def test_bad_paths_are_refused_with_their_errno(rig: Rig, tmp_path: Path) -> None:
    r = canfarfs(rig, "warmup", str(home(rig, "arc") / "no-such-dir"))
    assert r.returncode == 2
    assert "No such file or directory (ENOENT)" in r.stderr
    r = canfarfs(rig, "warmup", str(tmp_path))
    assert r.returncode == 2
    assert "not inside a canfarfs mount (EINVAL)" in r.stderr
    r = canfarfs(rig, "warmup", "--pin", "--evict", str(home(rig, "arc")))
    assert r.returncode == 2
    assert "not allowed with argument" in r.stderr
