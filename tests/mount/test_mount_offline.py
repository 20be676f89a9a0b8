"""Offline mounts (docs/semantics.md, *Offline*) through a real mount, with the emulator's
outage fault as the cut link: a start without the services, the last known listings and
the pinned files served, ENETDOWN at once for what is not cached, writes refused or
queued, and the mount going online by itself when the link is back."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.mount_util import Rig, data, home, needs_fuse, start_mount, wait_until

pytestmark = [needs_fuse, pytest.mark.fuse, pytest.mark.semantics("Offline")]
PINNED = {f"f{i}.fits": data(20_000 + i) for i in range(4)}


def canfarfs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canfarfs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, CANFARFS_USER="alice", COLUMNS="200"),
    )


def status(rig: Rig) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((rig.mount.path / ".canfarfs-control").read_bytes())
    return doc


def prepare_and_cut(rig: Rig, *extra: str) -> Path:
    """A pinned tree (pinned/), an unpinned file seen in a listing (other/big.bin);
    unmount, cut the link, and mount again with ``extra``."""
    base = home(rig, "arc")
    (base / "pinned").mkdir()
    for name, payload in PINNED.items():
        (base / "pinned" / name).write_bytes(payload)
    (base / "other").mkdir()
    (base / "other" / "big.bin").write_bytes(data(100_000))
    r = canfarfs("warmup", "--pin", str(base / "pinned"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(os.listdir(base / "other")) == ["big.bin"]  # listed, never read
    rig.mount.unmount()
    rig.faults(outage_seconds=3600)
    rig.mount = start_mount(
        rig.mount.path, [*rig.mount_args, *extra], env=dict(os.environ, CANFARFS_USER="alice")
    )
    return home(rig, "arc")


def test_an_offline_start_serves_what_it_knew_and_refuses_the_rest_at_once(rig: Rig) -> None:
    base = prepare_and_cut(rig)
    assert sorted(os.listdir(base / "pinned")) == sorted(PINNED)
    for name, payload in PINNED.items():
        assert (base / "pinned" / name).read_bytes() == payload
    assert sorted(os.listdir(base / "other")) == ["big.bin"]  # the last known listing
    started = time.monotonic()
    with pytest.raises(OSError) as info:
        (base / "other" / "big.bin").read_bytes()
    assert info.value.errno == errno.ENETDOWN
    assert time.monotonic() - started < 3.0  # at once, not after a time-out
    with pytest.raises(OSError) as info:
        (base / "pinned" / "new.txt").write_text("no write-back: read-only offline\n")
    assert info.value.errno == errno.EROFS
    wait_until(lambda: status(rig)["services"]["arc"]["offline_since"])
    shown = canfarfs("status", str(rig.mount.path))
    assert "offline since" in shown.stdout
    rig.clear()  # the link is back: served within about a second, without a remount

    def served() -> bool:
        try:
            return (base / "other" / "big.bin").read_bytes() == data(100_000)
        except OSError as exc:
            if exc.errno != errno.ENETDOWN:  # only "still offline" may come before
                raise
            return False

    started = time.monotonic()
    wait_until(served, timeout=5)
    assert time.monotonic() - started < 3.0


def test_writes_queue_offline_and_go_up_when_the_link_is_back(rig: Rig) -> None:
    base = prepare_and_cut(rig, "--writeback")
    results = base / "pinned" / "results.txt"
    results.write_text("computed on the train\n")  # queued: close returns
    assert results.read_text() == "computed on the train\n"
    (base / "pinned" / "night").mkdir()  # a directory too, offline
    (base / "pinned" / "night" / "log.txt").write_text("seeing 0.8\n")
    assert os.listdir(base / "pinned" / "night") == ["log.txt"]
    assert not status(rig)["services"]["arc"]["reachable"]
    rig.clear()  # the link is back: the mount goes online by itself
    wait_until(lambda: status(rig)["services"]["arc"]["reachable"])
    assert status(rig)["services"]["arc"]["offline_since"] is None

    def uploaded() -> bool:
        doc = status(rig)
        return not doc["uploads"] and not doc["dirs_queued"]

    wait_until(uploaded)
    for name, text in (
        ("results.txt", b"computed on the train\n"),
        ("night/log.txt", b"seeing 0.8\n"),
    ):
        r = rig.node("arc", f"home/alice/pinned/{name}")
        assert r.status_code == 200, name
        assert hashlib.md5(text).hexdigest() in r.text  # noqa: S324


def test_offline_flag_starts_offline_and_goes_online_when_answered(rig: Rig) -> None:
    base = home(rig, "arc")
    (base / "seen.txt").write_text("seen\n")
    rig.mount.unmount()
    rig.mount = start_mount(
        rig.mount.path,
        [*rig.mount_args, "--offline"],
        env=dict(os.environ, CANFARFS_USER="alice"),
    )
    assert status(rig)["services"]["arc"]["offline_since"]
    wait_until(lambda: status(rig)["services"]["arc"]["reachable"])
    assert (base / "seen.txt").read_text() == "seen\n"
