"""System mounts: the mount-helper form ``canfarfs SOURCE MOUNTPOINT -o OPTIONS``,
``mount -t fuse.canfarfs``, fstab lines, and the systemd units of docs/system-mounts.md.

mount(8) clears PATH, so the shell that mount.fuse3 starts finds ``canfarfs`` only in
the standard directories. The mount(8) tests therefore run in a private mount namespace
(``unshare --mount``) with a tmpfs over /usr/local/sbin holding a link to this venv's
``canfarfs``: the real mount(8) -> mount.fuse3 -> /bin/sh -> canfarfs chain, without
touching the host's directories. They need root, unshare and mount.fuse3.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from canfarfs.cli import build_parser
from canfarfs.daemon import MountOptions, fuse_options
from canfarfs.mountopts import FLAG_OPTIONS, VALUE_OPTIONS, helper_argv, split_options
from canfarfs.usage import UsageError
from tests.emulator_util import LiveEmulator
from tests.mount_util import is_mounted, needs_fuse

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "system-mounts.md"
CANFARFS_BIN = Path(sys.executable).parent / "canfarfs"
MOUNT_HELPER = next(
    (p for p in (Path("/sbin/mount.fuse3"), Path("/usr/sbin/mount.fuse3")) if p.exists()), None
)


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    r = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, check=False
    )
    return r.returncode == 0


needs_mount8 = pytest.mark.skipif(
    not (MOUNT_HELPER and CANFARFS_BIN.exists() and _can_unshare()),
    reason="mount(8) tests need root, unshare --mount, mount.fuse3 and the canfarfs "
    "console script next to sys.executable",
)


def canfarfs(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canfarfs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, CANFARFS_USER="alice", XDG_STATE_HOME=str(tmp_path / "state"))


def one_clear_line(r: subprocess.CompletedProcess[str], message: str) -> None:
    assert r.returncode != 0, r.stdout
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def wait_gone(cache: Path, timeout: float = 20) -> None:
    """Wait for the daemon that holds ``cache`` (its pid is in the lock file) to exit."""
    pid = int((cache / "lock").read_text().split()[0])
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"daemon {pid} still running after unmount"
        time.sleep(0.1)


# -- the helper argv and -o options (no FUSE) ------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["canfar", "/m"], ["mount", "/m"]),
        (["local:/d", "/m", "-o", "ro"], ["mount", "/m", "--local", "/d", "-o", "ro"]),
        (
            ["https://h:8443/pre/", "/m"],
            [
                "mount",
                "/m",
                "--arc-url",
                "https://h:8443/pre/arc",
                "--vault-url",
                "https://h:8443/pre/vault",
                "--skaha-url",
                "https://h:8443/pre/skaha/v1",
            ],
        ),
        (["mount", "/m", "--local", "/d"], ["mount", "/m", "--local", "/d"]),
        (["status", "/m"], ["status", "/m"]),
        (["--version"], ["--version"]),
    ],
)
def test_helper_argv(argv: list[str], expected: list[str]) -> None:
    assert helper_argv(argv) == expected


def test_local_source_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert helper_argv(["local:data", "m"]) == ["mount", "m", "--local", str(tmp_path / "data")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bogus", "/m"], "unknown source 'bogus'"),
        (["local:", "/m"], "needs a data directory"),
        (["https://", "/m"], "has no host"),
        (["mout"], "'mout' is not a command"),
        (["canfar", "-o", "ro"], "canfarfs SOURCE MOUNTPOINT"),
    ],
)
def test_helper_argv_refusals(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        helper_argv(argv)


def test_options_sorted_into_settings_fuse_and_ignored() -> None:
    settings, fuse = split_options(
        [
            "rw,cache_dir=/c,cache_size=2G,timeout=5,meta_ttl=0.5,ro,debug,foreground",
            "nonempty,allow_other,noatime,fsname=mine,max_read=131072,writeback,writeback_delay=0",
            "_netdev,noauto,nofail,user,users,defaults,x-systemd.automount,"
            "x-systemd.idle-timeout=1min,comment=x-gvfs-show,relatime,user=alice",
            "token_file=/t,cert_file=/c.pem,ca_file=/ca.pem,arc_url=https://a/arc",
        ]
    )
    assert settings == {
        "cache_dir": Path("/c"),
        "cache_size": 2 * 1024**3,
        "timeout": 5.0,
        "meta_ttl": 0.5,
        "read_only": True,
        "debug": True,
        "foreground": True,
        "nonempty": True,
        "token_file": Path("/t"),
        "cert_file": Path("/c.pem"),
        "ca_file": Path("/ca.pem"),
        "arc_url": "https://a/arc",
        "writeback": True,
        "writeback_delay": 0.0,
    }
    assert fuse == ["rw", "allow_other", "noatime", "fsname=mine", "max_read=131072"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("foo=bar", "unknown mount option -o foo=bar"),
        ("kernel_cache", "unknown mount option -o kernel_cache"),
        ("cache_size=lots", "-o cache_size=lots: not a size"),
        ("timeout=0", "-o timeout=0: must be a positive number"),
        ("writeback_delay=-1", "-o writeback_delay=-1: must be zero or a positive number"),
        ("writeback_delay=inf", "-o writeback_delay=inf: must be zero or a positive number"),
        ("cache_dir", "-o cache_dir needs a value"),
        ("debug=1", "unknown mount option -o debug=1"),
        ("setuid=alice", "is for mount.fuse3"),
    ],
)
def test_option_refusals(option: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        split_options([option])


def test_every_o_option_is_a_mount_flag() -> None:
    """-o name=value is --name-with-dashes value: same destination, same help entry."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    mount = sub.choices["mount"]
    flags = {opt: action.dest for action in mount._actions for opt in action.option_strings}
    for name, (dest, _) in VALUE_OPTIONS.items():
        assert flags[f"--{name.replace('_', '-')}"] == dest
    for name, dest in FLAG_OPTIONS.items():
        assert dest in flags.values(), name


def test_user_fsname_replaces_ours(tmp_path: Path) -> None:
    opts = MountOptions(mountpoint=tmp_path, cache_dir=tmp_path, fuse_options=["fsname=x"])
    assert {"fsname=x", "subtype=canfarfs", "default_permissions"} <= fuse_options(opts)
    assert "fsname=canfarfs" not in fuse_options(opts)


# -- the helper form, run directly -------------------------------------------------------


@needs_fuse
@pytest.mark.fuse
def test_helper_form_mounts_in_the_background(tmp_path: Path, env: dict[str, str]) -> None:
    mnt, cache = tmp_path / "mnt", tmp_path / "cache"
    mnt.mkdir()
    r = canfarfs(
        f"local:{tmp_path / 'data'}",
        str(mnt),
        "-o",
        f"cache_dir={cache},_netdev,nofail,x-systemd.automount,noatime,rw",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    try:
        assert is_mounted(mnt)
        [line] = [
            x
            for x in Path("/proc/self/mounts").read_text().splitlines()
            if x.split()[1] == str(mnt)
        ]
        assert line.split()[2] == "fuse.canfarfs"
        assert "noatime" in line.split()[3].split(",")
        (mnt / "arc/home/alice/h.txt").write_text("helper form")
        assert (mnt / "arc/home/alice/h.txt").read_text() == "helper form"
        doc = json.loads(canfarfs("status", str(mnt), "--json", env=env).stdout)
        assert doc["auth"]["kind"] == "local"
        assert doc["cache"]["dir"] == str(cache)
    finally:
        u = canfarfs("umount", str(mnt), env=env)
    assert u.returncode == 0, u.stderr
    wait_gone(cache)


@needs_fuse
@pytest.mark.fuse
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["local:DATA", "MNT", "-o", "foo=bar"], "unknown mount option -o foo=bar"),
        (["local:DATA", "MNT", "-o", "cache_size=lots"], "-o cache_size=lots: not a size"),
        (["nowhere:/x", "MNT"], "unknown source 'nowhere:/x'"),
        (["local:DATA", "MNT/missing"], "does not exist"),
        (["local:DATA", "MNT", "-o", "setuid=alice"], "is for mount.fuse3"),
        (["local:DATA", "/dev/fd/3"], "the mount point is a file descriptor"),
        (["local:DATA"], "is not a command"),
    ],
)
def test_helper_form_errors_are_one_line(
    tmp_path: Path, env: dict[str, str], args: list[str], message: str
) -> None:
    (tmp_path / "mnt").mkdir()
    args = [
        a.replace("DATA", str(tmp_path / "data")).replace("MNT", str(tmp_path / "mnt"))
        for a in args
    ]
    r = canfarfs(*args, env=env)
    assert r.returncode == 2
    one_clear_line(r, message)


@needs_fuse
@pytest.mark.fuse
def test_nonempty_is_a_canfarfs_option(tmp_path: Path, env: dict[str, str]) -> None:
    """libfuse 3 has no nonempty option; canfarfs takes it and checks emptiness itself."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (mnt / "hidden").write_text("x")
    one_clear_line(canfarfs(f"local:{tmp_path / 'data'}", str(mnt), env=env), "-o nonempty")
    r = canfarfs(
        f"local:{tmp_path / 'data'}",
        str(mnt),
        "-o",
        f"nonempty,cache_dir={tmp_path / 'cache'}",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    try:
        assert sorted(os.listdir(mnt)) == ["arc", "sessions", "vault"]
    finally:
        assert canfarfs("umount", str(mnt), env=env).returncode == 0
    assert (mnt / "hidden").read_text() == "x"


# -- mount(8) and fstab ------------------------------------------------------------------


def in_namespace(
    script: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run a bash script in a private mount namespace where /usr/local/sbin is a fresh
    tmpfs (first in the PATH the mount helper's shell uses)."""
    prelude = (
        "set -euo pipefail\n"
        "mount -t tmpfs -o mode=0755 canfarfs-test /usr/local/sbin\n"
        "export PATH=/usr/local/sbin:$PATH\n"
    )
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", prelude + script],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def ns_env(env: dict[str, str], **paths: Path) -> dict[str, str]:
    return dict(env, CANFARFS_BIN=str(CANFARFS_BIN), **{k: str(v) for k, v in paths.items()})


@needs_mount8
@pytest.mark.fuse
def test_mount_helper_argv_is_what_the_docs_say(tmp_path: Path, env: dict[str, str]) -> None:
    """What mount(8) + mount.fuse3 pass (docs/system-mounts.md), seen by a stand-in."""
    (tmp_path / "mnt").mkdir()
    (tmp_path / "elsewhere").mkdir()
    script = r"""
probe='#!/bin/sh
{ printf "%s\n" "$0" "$@"; echo "HOME=${HOME:-}"; } > "$OUT/argv"'
printf '%s\n' "$probe" > "$OUT/elsewhere/canfarfs"; chmod +x "$OUT/elsewhere/canfarfs"
set +e
PATH="$OUT/elsewhere:$PATH" mount -t fuse.canfarfs canfar "$OUT/mnt" 2> "$OUT/not-found"
echo "rc=$?"
set -e
printf '%s\n' "$probe" > /usr/local/sbin/canfarfs; chmod +x /usr/local/sbin/canfarfs
env -u HOME mount -t fuse.canfarfs local:/srv/data "$OUT/mnt" \
    -o cache_size=1G,_netdev,noauto,x-systemd.automount,nofail
"""
    r = in_namespace(script, ns_env(env, OUT=tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    # mount(8) drops PATH: a canfarfs only on the caller's PATH is not found.
    assert "rc=127" in r.stdout
    assert "canfarfs: not found" in (tmp_path / "not-found").read_text()
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv == [
        "/usr/local/sbin/canfarfs",
        "local:/srv/data",
        str(tmp_path / "mnt"),
        "-o",
        "rw,cache_size=1G,dev,suid",
        "HOME=/root",
    ]
    assert not is_mounted(tmp_path / "mnt")


@needs_mount8
@pytest.mark.fuse
def test_mount_t_fuse_canfarfs_then_an_fstab_line(tmp_path: Path, env: dict[str, str]) -> None:
    mnt, cache, data = tmp_path / "mnt", tmp_path / "cache", tmp_path / "data"
    mnt.mkdir()
    (tmp_path / "src.txt").write_text("copied through mount(8)\n")
    fstab = tmp_path / "fstab"
    fstab.write_text(
        f"# a test fstab\nlocal:{data}  {mnt}  fuse.canfarfs  noauto,_netdev,"
        f"nofail,x-systemd.automount,x-systemd.idle-timeout=5min,"
        f"cache_dir={cache}  0  0\n"
    )
    script = r"""
ln -s "$CANFARFS_BIN" /usr/local/sbin/canfarfs
trap 'umount -l "$MNT" 2>/dev/null || true' EXIT
mount -t fuse.canfarfs "local:$DATA" "$MNT" -o "cache_dir=$CACHE,_netdev,nofail,noatime"
echo "== mounts"; grep " $MNT " /proc/self/mounts
echo "== ls"; ls "$MNT"
cp "$OUT/src.txt" "$MNT/arc/home/alice/copied.txt"
echo "== cat"; cat "$MNT/arc/home/alice/copied.txt"
canfarfs status "$MNT" --json > "$OUT/status.json"
canfarfs umount "$MNT"
echo "== unmounted: $(grep -c " $MNT " /proc/self/mounts || true)"
mount --fstab "$OUT/fstab" "$MNT"
echo "== fstab: $(grep " $MNT " /proc/self/mounts | cut -d' ' -f3)"
echo "== fstab cat"; cat "$MNT/arc/home/alice/copied.txt"
rm "$MNT/arc/home/alice/copied.txt"
echo "== fstab ls: $(ls "$MNT/arc/home/alice" | wc -l)"
umount "$MNT"
echo "== done: $(grep -c " $MNT " /proc/self/mounts || true)"
"""
    r = in_namespace(script, ns_env(env, OUT=tmp_path, MNT=mnt, DATA=data, CACHE=cache))
    log = tmp_path / "state/canfarfs/canfarfs.log"
    detail = r.stdout + r.stderr + (log.read_text() if log.exists() else "")
    assert r.returncode == 0, detail
    out = r.stdout
    mounts = out.split("== mounts\n")[1].splitlines()[0].split()
    assert mounts[:3] == ["canfarfs", str(mnt), "fuse.canfarfs"]
    assert "noatime" in mounts[3].split(",")
    assert out.split("== ls\n")[1].split("==")[0].split() == ["arc", "sessions", "vault"]
    assert "== cat\ncopied through mount(8)\n" in out
    assert json.loads((tmp_path / "status.json").read_text())["uploads"] == []
    assert "== unmounted: 0" in out
    assert "== fstab: fuse.canfarfs" in out
    assert "== fstab cat\ncopied through mount(8)\n" in out  # kept across mounts
    assert "== fstab ls: 0" in out
    assert "== done: 0" in out
    wait_gone(cache)
    assert "Traceback" not in detail


@needs_mount8
@pytest.mark.fuse
def test_mount8_errors_are_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cases = {
        "option": ("local:/srv/x", "-o foo=bar", "unknown mount option -o foo=bar"),
        "value": ("local:/srv/x", "-o cache_size=lots", "-o cache_size=lots: not a size"),
        "source": ("bogus", "", "unknown source 'bogus'"),
        "login": ("canfar", "", "canfar auth login"),
    }
    lines = [
        f'mount -t fuse.canfarfs {src} "$MNT" {opts} 2> "$OUT/{name}.err"; '
        f'echo $? > "$OUT/{name}.rc"'
        for name, (src, opts, _) in cases.items()
    ]
    home = tmp_path / "home"  # no canfar login there
    home.mkdir()
    script = 'ln -s "$CANFARFS_BIN" /usr/local/sbin/canfarfs\nset +e\n' + "\n".join(lines)
    clean = {k: v for k, v in env.items() if not k.startswith("CANFAR_")}
    r = in_namespace(
        f"export HOME={shlex.quote(str(home))}\n" + script, ns_env(clean, OUT=tmp_path, MNT=mnt)
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for name, (_, _, message) in cases.items():
        err = (tmp_path / f"{name}.err").read_text()
        assert int((tmp_path / f"{name}.rc").read_text()) != 0, name
        assert message in err, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)
        assert err.startswith("canfarfs: ")
    assert not is_mounted(mnt)


@needs_fuse
@pytest.mark.fuse
@pytest.mark.skipif(
    os.geteuid() != 0 or MOUNT_HELPER is None or not CANFARFS_BIN.exists(),
    reason="mount(8) needs root, mount.fuse3 and the canfarfs console script",
)
def test_fstab_line_with_the_full_path(tmp_path: Path, env: dict[str, str]) -> None:
    """Type ``fuse`` with ``/path/to/canfarfs#SOURCE``: no PATH needed (the docs' second
    fix), in the test's own mount namespace."""
    mnt, cache = tmp_path / "mnt", tmp_path / "cache"
    mnt.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(
        f"{CANFARFS_BIN}#local:{tmp_path / 'data'}  {mnt}  fuse  "
        f"noauto,_netdev,cache_dir={cache}  0  0\n"
    )
    r = subprocess.run(
        ["mount", "--fstab", str(fstab), str(mnt)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    try:
        assert is_mounted(mnt)
        (mnt / "vault/alice/f.txt").write_text("fstab")
        assert (mnt / "vault/alice/f.txt").read_text() == "fstab"
        assert canfarfs("status", str(mnt), env=env).returncode == 0
    finally:
        u = canfarfs("umount", str(mnt), env=env)
        if u.returncode != 0:
            subprocess.run(["fusermount3", "-uz", str(mnt)], check=False)
    assert u.returncode == 0, u.stderr
    wait_gone(cache)


# -- the systemd units and fstab lines of docs/system-mounts.md --------------------------


def doc_files() -> dict[str, str]:
    """The code blocks of the page that start with ``# PATH``: {PATH: text}."""
    blocks = re.findall(r"```\w*\n# (\S+)\n(.*?)```", DOC.read_text(), flags=re.S)
    return {path: body for path, body in blocks}


def unit_value(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_doc_has_the_units_and_fstab() -> None:
    files = doc_files()
    assert set(files) == {
        "/etc/fstab",
        "/etc/systemd/system/mnt-canfar.mount",
        "/etc/systemd/system/mnt-canfar.automount",
        "~/.config/systemd/user/canfarfs@.service",
    }


def _as_helper_options(options: str) -> list[str]:
    """What reaches canfarfs: mount.fuse3 consumes setuid= and drop_privileges."""
    return [o for o in options.split(",") if not o.startswith("setuid=") and o != "drop_privileges"]


def test_doc_fstab_lines_and_mount_unit_options_are_accepted() -> None:
    files = doc_files()
    entries = [
        line.split()
        for line in files["/etc/fstab"].splitlines()
        if line.strip() and not line.startswith("#")
    ]
    entries.append(
        [
            "canfar",
            "/mnt/canfar",
            "fuse.canfarfs",
            unit_value(files["/etc/systemd/system/mnt-canfar.mount"], "Options")[0],
        ]
    )
    inline = re.findall(
        r"`(canfar \S+ fuse\.canfarfs [^`]*?)`", DOC.read_text().replace("\n  ", " ")
    )
    entries += [line.split() for line in inline]
    assert len(entries) >= 5
    for source, mountpoint, fstype, options, *_ in entries:
        assert fstype == "fuse.canfarfs"
        argv = helper_argv([source, mountpoint, "-o", ",".join(_as_helper_options(options))])
        args = build_parser().parse_args(argv)
        split_options(args.fuse_options)  # raises on anything canfarfs would refuse


def expand(command: str, home: Path, instance: str) -> list[str]:
    """A unit's command line with %h and %I expanded, as systemd would (no '-' prefix)."""
    text = command.lstrip("-").replace("%h", str(home)).replace("%I", instance)
    return shlex.split(text)


def test_user_unit_commands_parse() -> None:
    unit = doc_files()["~/.config/systemd/user/canfarfs@.service"]
    [start] = unit_value(unit, "ExecStart")
    [stop] = unit_value(unit, "ExecStop")
    home = Path("/home/alice")
    argv = expand(start, home, "canfar")
    assert argv[0] == "/home/alice/.local/bin/canfarfs"
    args = build_parser().parse_args(helper_argv(argv[1:]))
    assert (args.command, args.mountpoint, args.foreground) == ("mount", home / "canfar", True)
    args = build_parser().parse_args(expand(stop, home, "canfar")[1:])
    assert (args.command, args.mountpoint) == ("umount", home / "canfar")
    assert unit_value(unit, "Type") == ["notify"]


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
def test_doc_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """The system units as they are; the user unit as instance canfarfs@canfar with a
    HOME whose ~/.local/bin/canfarfs is this venv's (verify checks the executables)."""
    files = doc_files()
    system = tmp_path / "system"
    system.mkdir()
    for name in ("mnt-canfar.mount", "mnt-canfar.automount"):
        (system / name).write_text(files[f"/etc/systemd/system/{name}"])
    r = subprocess.run(
        ["systemd-analyze", "verify", *(str(p) for p in system.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr
    if not CANFARFS_BIN.exists():
        pytest.skip("no canfarfs console script next to sys.executable")
    home = tmp_path / "home"
    (home / ".local/bin").mkdir(parents=True)
    (home / ".local/bin/canfarfs").symlink_to(CANFARFS_BIN)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    user = tmp_path / "user"
    user.mkdir()
    (user / "canfarfs@canfar.service").write_text(files["~/.config/systemd/user/canfarfs@.service"])
    r = subprocess.run(
        ["systemd-analyze", "--user", "verify", str(user / "canfarfs@canfar.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(runtime)),
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield sock, path
    sock.close()


@needs_fuse
@pytest.mark.fuse
@pytest.mark.skipif(not CANFARFS_BIN.exists(), reason="no canfarfs console script")
def test_user_unit_runs_as_systemd_would(
    live_emulator: LiveEmulator, tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    """ExecStartPre, ExecStart (Type=notify: READY=1 once mounted), ExecStop — with a
    canfar login in HOME whose access token has expired (refreshed at the first use)."""
    from tests.login_util import canfar_config

    unit = doc_files()["~/.config/systemd/user/canfarfs@.service"]
    home = tmp_path / "home"
    (home / ".local/bin").mkdir(parents=True)
    (home / ".local/bin/canfarfs").symlink_to(CANFARFS_BIN)
    config = home / ".canfar" / "config.yaml"
    config.parent.mkdir()
    grant = json.loads((live_emulator.root / "oidc.json").read_text())
    config.write_text(yaml.safe_dump(canfar_config(live_emulator.url, grant)))
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CANFAR", "XDG_"))}
    env.update(HOME=str(home), CANFARFS_USER="alice")
    mnt = home / "canfar"

    for pre in unit_value(unit, "ExecStartPre"):
        r = subprocess.run(
            expand(pre, home, "canfar"),
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert r.returncode == 0 or pre.startswith("-"), r.stderr
    assert mnt.is_dir()
    sock, path = notify_socket
    sock.settimeout(60)
    [start] = unit_value(unit, "ExecStart")
    log = tmp_path / "daemon.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            expand(start, home, "canfar"),
            env=dict(env, NOTIFY_SOCKET=path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        message = sock.recv(4096).decode()
        assert message.startswith("READY=1\n"), message
        assert is_mounted(mnt)
        (mnt / "arc/home/alice/unit.txt").write_text("from the user unit")
        assert (mnt / "arc/home/alice/unit.txt").read_text() == "from the user unit"
        doc = json.loads(canfarfs("status", str(mnt), "--json", env=env).stdout)
        assert doc["auth"]["kind"] == "oidc"
        assert doc["auth"]["state"] == "ok"
        assert doc["auth"]["expires"] > time.time()  # the refreshed token's expiry
        [stop] = unit_value(unit, "ExecStop")
        r = subprocess.run(
            expand(stop, home, "canfar"),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)], check=False)
    assert not is_mounted(mnt)
    text = log.read_text()
    assert "mounted" in text  # the journal (stderr) gets the log too
    assert "Traceback" not in text
    assert grant["refresh_token"] not in text
