"""End to end: a real mount against the local platform, driven by the tools people use.

Written from docs/semantics.md; each test names the behaviour it checks.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount_util import Mount, local_mount, needs_fuse, start_mount

pytestmark = [needs_fuse, pytest.mark.fuse, pytest.mark.semantics("At a glance")]
USER = "alice"


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    yield from local_mount(tmp_path_factory.mktemp("mount"), "--meta-ttl", "1")


@pytest.fixture(params=["arc", "vault"])
def home(request: pytest.FixtureRequest, mount: Mount) -> Path:
    """A fresh directory in the user's allocation on each service."""
    base = (
        mount.path / "arc" / "home" / USER
        if request.param == "arc"
        else mount.path / "vault" / USER
    )
    d = base / f"t-{request.node.name.split('[')[0][-40:]}"
    d.mkdir()
    return d


def sh(cmd: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def payload(n: int, seed: int = 1) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048
    return (block * (n // len(block) + 1))[:n]


# -- the root ------------------------------------------------------------------------------


@pytest.mark.semantics("Names")
def test_root_holds_arc_vault_sessions_and_refuses_anything_else(mount: Mount) -> None:
    assert sorted(os.listdir(mount.path)) == ["arc", "sessions", "vault"]
    with pytest.raises(PermissionError):
        (mount.path / "new.txt").write_text("x")
    with pytest.raises(PermissionError):
        (mount.path / "newdir").mkdir()


def test_allocations_are_visible(mount: Mount) -> None:
    assert USER in os.listdir(mount.path / "arc" / "home")
    assert USER in os.listdir(mount.path / "vault")


# -- reading and writing -------------------------------------------------------------------


def test_cp_in_and_out_is_byte_identical(home: Path, tmp_path: Path) -> None:
    data = payload(3_000_000)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    assert sh(f"cp {src} in.bin", home).returncode == 0
    assert sh(f"cp in.bin {tmp_path / 'out.bin'}", home).returncode == 0
    assert (tmp_path / "out.bin").read_bytes() == data
    assert os.stat(home / "in.bin").st_size == len(data)


def test_cat_and_shell_redirections(home: Path) -> None:
    r = sh("echo first > log.txt && echo second >> log.txt && cat log.txt", home)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "first\nsecond\n"
    assert (home / "log.txt").read_text() == "first\nsecond\n"


@pytest.mark.semantics("Reading")
def test_empty_file_reads_empty(home: Path) -> None:
    (home / "empty").touch()
    assert (home / "empty").read_bytes() == b""
    assert os.stat(home / "empty").st_size == 0
    assert sh("cat empty | wc -c", home).stdout.strip() == "0"


@pytest.mark.semantics("Reading")
def test_random_reads_and_mmap(home: Path) -> None:
    data = payload(4_000_000, seed=2)
    (home / "fits-like.bin").write_bytes(data)
    with open(home / "fits-like.bin", "rb") as f:
        assert f.read(2880) == data[:2880]
        f.seek(3_500_000)
        assert f.read(1000) == data[3_500_000:3_501_000]
        f.seek(100)
        assert f.read(10) == data[100:110]
        with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
            assert m[2_000_000:2_000_100] == data[2_000_000:2_000_100]
            assert m[-10:] == data[-10:]


def test_python_open_seek_write_rdwr(home: Path) -> None:
    (home / "rw.bin").write_bytes(b"0123456789")
    with open(home / "rw.bin", "r+b") as f:
        f.seek(3)
        f.write(b"abc")
        f.seek(0)
        assert f.read() == b"012abc6789"
    assert (home / "rw.bin").read_bytes() == b"012abc6789"


def test_truncate_and_overwrite(home: Path) -> None:
    (home / "t.txt").write_text("a long line of text\n")
    os.truncate(home / "t.txt", 6)
    assert (home / "t.txt").read_text() == "a long"
    (home / "t.txt").write_text("new")
    assert (home / "t.txt").read_text() == "new"
    os.truncate(home / "t.txt", 0)
    assert (home / "t.txt").read_bytes() == b""


@pytest.mark.semantics("Writing and durability")
def test_close_reports_success_only_when_stored(home: Path, mount: Mount) -> None:
    """After close() returns, a brand-new reader (bypassing caches) sees the bytes."""
    data = payload(1_000_000, seed=3)
    with open(home / "durable.bin", "wb") as f:
        f.write(data)
    # Read back through the storage service itself (no FUSE cache): vcp-free check via
    # the emulator's files on disk would be white-box; the listing's MD5 is the server's.
    md5 = os.getxattr(home / "durable.bin", "user.MD5").decode()
    assert md5 == hashlib.md5(data).hexdigest()  # noqa: S324


# -- directories, rename, delete -------------------------------------------------------------


def test_mkdir_p_ls_find_rm_r(home: Path) -> None:
    assert sh("mkdir -p a/b/c && touch a/b/c/f1 a/f2", home).returncode == 0
    found = sh("find a | sort", home).stdout.split()
    assert found == ["a", "a/b", "a/b/c", "a/b/c/f1", "a/f2"]
    r = sh("ls -l a", home)
    assert r.returncode == 0
    assert "f2" in r.stdout
    assert sh("rm -r a", home).returncode == 0
    assert not (home / "a").exists()


@pytest.mark.semantics("Errno table")
def test_rmdir_non_empty_is_enotempty(home: Path) -> None:
    (home / "full").mkdir()
    (home / "full" / "f").write_text("x")
    with pytest.raises(OSError) as exc:
        os.rmdir(home / "full")
    assert exc.value.errno == errno.ENOTEMPTY


@pytest.mark.semantics("Errno table")
def test_mkdir_existing_is_eexist(home: Path) -> None:
    (home / "d").mkdir()
    with pytest.raises(FileExistsError):
        (home / "d").mkdir()


@pytest.mark.semantics("Renames")
def test_mv_file_dir_and_over_existing(home: Path) -> None:
    (home / "one.txt").write_text("one")
    (home / "two.txt").write_text("two")
    assert sh("mv one.txt renamed.txt", home).returncode == 0
    assert (home / "renamed.txt").read_text() == "one"
    assert not (home / "one.txt").exists()
    assert sh("mv two.txt renamed.txt", home).returncode == 0  # replaces: not atomic
    assert (home / "renamed.txt").read_text() == "two"
    assert sh("mkdir -p dir/sub && echo deep > dir/sub/x && mv dir moved", home).returncode == 0
    assert (home / "moved" / "sub" / "x").read_text() == "deep\n"


@pytest.mark.semantics("Renames")
def test_mv_between_arc_and_vault_copies(mount: Mount) -> None:
    src = mount.path / "arc" / "home" / USER / "cross.txt"
    dst = mount.path / "vault" / USER / "cross.txt"
    src.write_text("across services")
    with pytest.raises(OSError) as exc:
        os.rename(src, dst)
    assert exc.value.errno == errno.EXDEV
    assert sh(f"mv {src} {dst}", mount.path).returncode == 0  # mv falls back to copy
    assert dst.read_text() == "across services"
    assert not src.exists()


@pytest.mark.semantics("Links")
def test_symlinks_are_link_nodes(home: Path) -> None:
    (home / "target.txt").write_text("pointed at")
    assert (
        sh("mkdir sub && ln -s ../target.txt sub/link && ln -s target.txt top", home).returncode
        == 0
    )
    assert os.readlink(home / "sub" / "link") == "../target.txt"
    assert (home / "sub" / "link").read_text() == "pointed at"
    assert stat.S_ISLNK(os.lstat(home / "top").st_mode)
    with pytest.raises(OSError) as exc:
        os.symlink("../../../../../../etc", home / "escape")
    assert exc.value.errno == errno.EINVAL


# -- stat, chmod, xattrs, df ---------------------------------------------------------------


@pytest.mark.semantics("Permissions")
def test_stat_shows_size_owner_and_private_mode(home: Path) -> None:
    (home / "s.txt").write_text("12345")
    st = os.stat(home / "s.txt")
    assert st.st_size == 5
    assert st.st_uid == os.getuid()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_blocks == 1


@pytest.mark.semantics("Permissions")
def test_chmod_maps_to_public_and_group_permissions(home: Path) -> None:
    f = home / "perm.txt"
    f.write_text("p")
    assert sh("chmod o+r perm.txt", home).returncode == 0
    assert os.getxattr(f, "user.ispublic") == b"true"
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o604
    assert sh("chmod o-r perm.txt", home).returncode == 0
    assert os.getxattr(f, "user.ispublic") == b"false"
    r = sh("chmod g+r perm.txt", home)
    assert r.returncode != 0  # no group to grant yet: EPERM
    os.setxattr(f, "user.groupread", b"survey-team")
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o640
    assert sh("chmod g+w perm.txt", home).returncode == 0
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o660
    assert sh("chmod g-rw perm.txt", home).returncode == 0
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    with pytest.raises(PermissionError):
        os.chmod(f, 0o602)


@pytest.mark.semantics("Properties as extended attributes")
def test_xattrs_show_properties_and_set_custom_ones(home: Path) -> None:
    f = home / "x.txt"
    f.write_text("props")
    r = sh("getfattr -d x.txt", home)
    assert r.returncode == 0
    for name in ("user.MD5", "user.creator", "user.date", "user.ispublic", "user.length"):
        assert name in r.stdout
    assert sh("setfattr -n user.quality -v good x.txt", home).returncode == 0
    assert os.getxattr(f, "user.quality") == b"good"
    assert sh("setfattr -x user.quality x.txt", home).returncode == 0
    with pytest.raises(OSError) as exc:
        os.getxattr(f, "user.quality")
    assert exc.value.errno == errno.ENODATA
    for other in ("security.selinux", "system.posix_acl_access", "trusted.x"):
        with pytest.raises(OSError) as exc:  # semantics.md: other namespaces are ENOTSUP
            os.getxattr(f, other)
        assert exc.value.errno == errno.ENOTSUP
    with pytest.raises(PermissionError):
        os.setxattr(f, "user.MD5", b"0" * 32)


@pytest.mark.semantics("Bounds")
def test_df_reports_the_quota(mount: Mount) -> None:
    st = os.statvfs(mount.path / "arc" / "home" / USER)
    assert st.f_blocks * st.f_frsize >= 10 * 1024**3
    assert st.f_namemax == 255
    r = sh("df -h .", mount.path)
    assert r.returncode == 0
    assert "canfarfs" in r.stdout


def test_touch_existing_file_is_accepted(home: Path) -> None:
    (home / "old.txt").write_text("o")
    assert sh("touch old.txt", home).returncode == 0
    assert (home / "old.txt").read_text() == "o"


# -- names ---------------------------------------------------------------------------------


@pytest.mark.semantics("Names")
def test_names_with_spaces_and_unicode_work(home: Path) -> None:
    (home / "a file é.txt").write_text("ok")
    assert (home / "a file é.txt").read_text() == "ok"
    assert "a file é.txt" in os.listdir(home)


@pytest.mark.semantics("Names")
def test_bad_names_are_refused(home: Path) -> None:
    with pytest.raises(OSError) as exc:
        (home / "bad\x01name").write_text("x")
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(OSError) as exc:
        (home / ("n" * 256)).write_text("x")
    assert exc.value.errno == errno.ENAMETOOLONG
    with pytest.raises(OSError) as exc:
        (home / os.fsdecode(b"bad\xffbytes")).write_text("x")
    assert exc.value.errno == errno.EINVAL


# -- everyday tools ------------------------------------------------------------------------


def test_rsync_and_tar_into_the_mount(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    for i in range(5):
        (src / f"f{i}.txt").write_text(f"file {i}\n")
    (src / "sub" / "deep.bin").write_bytes(payload(200_000))
    sh("chmod -R go-rwx .", src)  # private data; see the next test for 0644 trees
    r = sh(f"rsync -a {src}/ synced/", home)
    assert r.returncode == 0, r.stderr
    again = sh(f"rsync -a --itemize-changes {src}/ synced/", home)
    assert again.returncode == 0
    assert (home / "synced" / "sub" / "deep.bin").read_bytes() == payload(200_000)
    r = sh(
        f"tar -C {src} -cf {tmp_path}/t.tar . && mkdir untar && tar -xf {tmp_path}/t.tar -C untar",
        home,
    )
    assert r.returncode == 0, r.stderr
    assert (home / "untar" / "f3.txt").read_text() == "file 3\n"


@pytest.mark.semantics("Freshness")
def test_listing_is_a_stable_snapshot_while_files_are_created(home: Path) -> None:
    for i in range(50):
        (home / f"e{i:02d}").write_text("x")
    names = []
    with os.scandir(home) as it:
        for i, entry in enumerate(it):
            names.append(entry.name)
            if i == 10:
                (home / "zz-new").write_text("y")
    assert len(names) == len(set(names))
    assert {f"e{i:02d}" for i in range(50)} <= set(names)


def test_rsync_of_world_readable_files_never_publishes_them(home: Path, tmp_path: Path) -> None:
    """A copy's mode is recorded, never granted: 0644 asks for group and public read,
    which a copy does not get; rsync exits 0 and the file stays private."""
    src = tmp_path / "pub"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    os.chmod(src / "a.txt", 0o644)
    r = sh(f"rsync -a {src}/ out/", home)
    assert r.returncode == 0, r.stderr
    assert (home / "out" / "a.txt").read_text() == "a\n"
    assert os.getxattr(home / "out" / "a.txt", "user.ispublic") == b"false"
    assert stat.S_IMODE(os.stat(home / "out" / "a.txt").st_mode) == 0o644


@pytest.mark.semantics("Properties as extended attributes")
def test_vault_lock_flag_is_settable_and_refuses_changes(mount: Mount) -> None:
    f = mount.path / "vault" / USER / "locked.txt"
    f.write_text("keep me")
    os.setxattr(f, "user.islocked", b"true")
    assert os.getxattr(f, "user.islocked") == b"true"
    with pytest.raises(OSError) as exc:
        f.write_text("changed")
    assert exc.value.errno in (errno.EACCES, errno.EPERM)
    with pytest.raises(OSError) as exc:
        os.unlink(f)
    assert exc.value.errno in (errno.EACCES, errno.EPERM)
    os.removexattr(f, "user.islocked")
    f.write_text("changed")
    assert f.read_text() == "changed"


@pytest.mark.semantics("Errno table")
def test_read_only_mount_refuses_every_change(tmp_path: Path) -> None:
    env = dict(os.environ, CANFARFS_USER=USER)
    m = start_mount(
        tmp_path / "ro",
        ["--local", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache"), "--read-only"],
        env=env,
    )
    try:
        home = m.path / "arc" / "home" / USER
        assert os.listdir(home) == []
        for attempt in (
            lambda: (home / "x").write_text("x"),
            lambda: (home / "d").mkdir(),
            lambda: os.setxattr(home, "user.k", b"v"),
        ):
            with pytest.raises(OSError) as exc:
                attempt()
            assert exc.value.errno == errno.EROFS
    finally:
        m.unmount()
