"""Skaha emulator, headless sessions as real local processes (docs/emulator-skaha.md)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx2
import pytest

from canfarfs.emulator.app import Emulator, build_emulator
from canfarfs.emulator.sessions_runner import probe_arc, session_dir
from canfarfs.emulator.skaha_model import SkahaSettings
from tests.emulator_util import TOKEN, USER, make_client
from tests.skaha_util import (
    V1,
    create,
    events,
    gone,
    info,
    logs,
    running,
    until,
    wait_status,
)

DONE = ("Completed", "Failed")


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _all_dead(*pids: int) -> bool:
    return not any(_alive(p) for p in pids)


async def _no_dir(root: Path, sid: str) -> bool:
    return not session_dir(root, sid).exists()


async def test_output_env_and_args(
    client: httpx2.AsyncClient, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANFARFS_TEST_SECRET", "do-not-leak")
    async with running(emulator):
        ok = await create(
            client,
            cmd="printenv",
            args="REPLICA_ID FOO",
            env=["FOO=bar", "EQ=a=b", "REPLICA_ID=2", "REPLICA_COUNT=3"],
        )
        dropped = await create(client, cmd="printenv", args="EQ", env=["EQ=a=b"])
        split = await create(client, cmd="printf", args="[%s]\\n a  b")
        envdump = await create(client, cmd="env", env=["FOO=bar"])
        cwd = await create(client, cmd="pwd")
        for sid in (ok, dropped, split, envdump, cwd):
            await wait_status(client, sid, *DONE)
        assert (await info(client, ok))["status"] == "Completed"
        assert await logs(client, ok) == "2\nbar\n"
        assert [r[1] for r in await events(client, ok)] == [
            "Scheduled",
            "Pulled",
            "Created",
            "Started",
            "Completed",
        ]
        assert (await info(client, dropped))["status"] == "Failed"
        assert [r[1] for r in await events(client, dropped)][-2:] == [
            "Failed",
            "BackoffLimitExceeded",
        ]
        assert await logs(client, split) == "[a]\n[]\n[b]\n"
        dump = await logs(client, envdump)
        env = dict(line.split("=", 1) for line in dump.splitlines())
        home = session_dir(emulator.config.root, envdump) / "home"
        assert env["HOME"] == str(home)
        assert set(env) - {"PWD", "SHLVL", "_", "OLDPWD"} == {
            "PATH",
            "HOME",
            "LANG",
            "USER",
            "LOGNAME",
            "ARC_ROOT",
            "FOO",
        }
        assert "do-not-leak" not in dump
        assert TOKEN not in dump
        assert env["USER"] == USER
        assert await logs(client, cwd) == str(session_dir(emulator.config.root, cwd) / "home\n")


async def test_command_not_found(client: httpx2.AsyncClient, emulator: Emulator) -> None:
    async with running(emulator):
        sid = await create(client, cmd="no-such-command-xyz", args="a b")
        data = await wait_status(client, sid, *DONE)
        assert data["status"] == "Failed"
        rows = await events(client, sid)
        assert 'exec: "no-such-command-xyz": executable file not found in $PATH' in rows[-2][2]
        assert await logs(client, sid) == ""


def _write_script(root: Path, name: str, text: str) -> None:
    home = root / "arc" / "home" / USER
    home.mkdir(parents=True, exist_ok=True)
    script = home / name
    script.write_text(text)
    script.chmod(0o755)


async def test_partial_logs_and_destroy_kills_group(
    client: httpx2.AsyncClient, emulator: Emulator
) -> None:
    root = emulator.config.root
    _write_script(
        root,
        "job.sh",
        '#!/bin/sh\necho started\nsleep 300 &\necho $! > "$HOME/child.pid"\nsleep 300\n',
    )
    async with running(emulator) as svc:
        sid = await create(client, cmd=f"{svc.runner.arc.visible}/home/{USER}/job.sh")
        await wait_status(client, sid, "Running")
        home = session_dir(root, sid) / "home"

        async def started() -> bool:
            return "started" in await logs(client, sid) and (home / "child.pid").exists()

        await until(started)
        assert await logs(client, sid) == "started\n"  # partial output while running
        row = svc.db.get(sid)
        assert row is not None
        assert row.pid is not None
        main, child = row.pid, int((home / "child.pid").read_text())
        assert _alive(main)
        assert _alive(child)
        assert (await client.delete(f"{V1}/{sid}")).status_code == 200
        await until(lambda: _all_dead(main, child))
        assert await gone(client, sid)
        await until(lambda: _no_dir(root, sid))


async def test_arc_tree_visible(client: httpx2.AsyncClient, emulator: Emulator) -> None:
    root = emulator.config.root
    (root / "arc" / "home" / USER).mkdir(parents=True, exist_ok=True)
    (root / "arc" / "home" / USER / "input.txt").write_text("hello arc\n")
    async with running(emulator) as svc:
        visible = svc.runner.arc.visible
        if os.geteuid() == 0 and svc.runner.arc.prefix:
            assert visible == "/arc"
        cat = await create(client, cmd="cat", args=f"{visible}/home/{USER}/input.txt")
        write = await create(
            client, cmd="sh", args="-c echo${IFS}out>$ARC_ROOT/home/" + USER + "/out.txt"
        )
        for sid in (cat, write):
            assert (await wait_status(client, sid, *DONE))["status"] == "Completed"
        assert await logs(client, cat) == "hello arc\n"
        assert (root / "arc" / "home" / USER / "out.txt").read_text() == "out\n"


async def test_shutdown_kills_and_restart_fails_sessions(
    client: httpx2.AsyncClient, emulator: Emulator
) -> None:
    async with running(emulator) as svc:
        sid = await create(client, cmd="sh", args="-c echo${IFS}hi;sleep${IFS}300")
        await wait_status(client, sid, "Running")

        async def said_hi() -> bool:
            return await logs(client, sid) == "hi\n"

        await until(said_hi)
        row = svc.db.get(sid)
        assert row is not None
        assert row.pid is not None
        pid = row.pid
    assert not _alive(pid)  # cancelling run() killed the process
    again = build_emulator(emulator.config)
    try:
        async with make_client(again) as c2:
            data = await info(c2, sid)
            assert data["status"] == "Failed"
            last = (await events(c2, sid))[-1]
            assert last[:2] == ["Warning", "EmulatorRestarted"]
            assert await logs(c2, sid) == "hi\n"
    finally:
        again.close()


async def test_no_command_and_disabled_processes(
    client: httpx2.AsyncClient, emulator: Emulator
) -> None:
    async with running(emulator) as svc:
        bare = await create(client)
        assert (await wait_status(client, bare, *DONE))["status"] == "Completed"
        assert "default command is not emulated" in await logs(client, bare)
        svc.settings.run = False
        off = await create(client, cmd="touch", args="/tmp/never")
        assert (await wait_status(client, off, *DONE))["status"] == "Completed"
        assert "'touch /tmp/never' was not run" in await logs(client, off)


async def test_finished_headless_is_collected(
    client: httpx2.AsyncClient, emulator: Emulator
) -> None:
    async with running(emulator) as svc:
        sid = await create(client, cmd="true")
        await wait_status(client, sid, *DONE)
        assert session_dir(emulator.config.root, sid).exists()
        svc.clock.offset = 3601  # ttlSecondsAfterFinished of headless Jobs
        await until(lambda: gone(client, sid))
        await until(lambda: _no_dir(emulator.config.root, sid))


async def test_arc_view_degrades_without_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not root (or arc_mount=off): no namespace, ARC_ROOT names the host directory."""
    (tmp_path / "arc").mkdir()
    plain = str((tmp_path / "arc").resolve())
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    view = await probe_arc(tmp_path, SkahaSettings())
    assert (view.visible, view.prefix) == (plain, ())
    monkeypatch.undo()
    view = await probe_arc(tmp_path, SkahaSettings(arc_mount="off"))
    assert (view.visible, view.prefix) == (plain, ())


def test_settings_from_environment() -> None:
    settings = SkahaSettings.from_env(
        {
            "CANFARFS_SKAHA_MAX_SESSIONS": "2",
            "CANFARFS_SKAHA_RUN": "0",
            "CANFARFS_SKAHA_PENDING_SECONDS": "x",
        }
    )
    assert (settings.max_sessions, settings.run, settings.pending_seconds) == (2, False, 1.0)
