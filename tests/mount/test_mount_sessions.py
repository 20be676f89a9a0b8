"""End to end: ``sessions/`` of a real mount against the local platform, driven by shell
tools and cross-checked with CADC's ``canfar`` client.

Written from docs/sessions.md: every session example of the canfar documentation done
as file operations, the bad-spec corpus, ``tail -f``, editor saves, destroy and renew.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulator_util import clean_env
from tests.mount_util import Mount, needs_fuse, ok, sh, start_mount, wait_until

pytestmark = [needs_fuse, pytest.mark.fuse]
USER = "alice"
TERMINAL = "images.canfar.net/skaha/terminal:1.1.1"
ASTROML = "images.canfar.net/skaha/astroml:latest"
PRIVATE = "images.canfar.net/your/private-image:latest"
SECRET = "CLI-SECRET-7f3a"


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    base = tmp_path_factory.mktemp("smount")
    env = dict(os.environ, CANFARFS_USER=USER, CANFARFS_SKAHA_PENDING_SECONDS="0.3")
    m = start_mount(
        base / "mnt",
        ["--local", str(base / "data"), "--cache-dir", str(base / "cache"), "--meta-ttl", "1"],
        env=env,
    )
    assert (m.path / "sessions" / "images").exists(), m.log_text()
    yield m
    m.unmount()
    assert m.proc.returncode == 0, m.log_text()
    assert "Traceback" not in m.log_text()
    assert SECRET not in m.log_text()


@pytest.fixture
def sess(mount: Mount) -> Path:
    return mount.path / "sessions"


def ids_of(sess: Path, spec: str) -> list[str]:
    return (sess / f"{spec}.ids").read_text().split()


def status(sess: Path, sid: str) -> str:
    return (sess / sid / "status").read_text().strip()


def wait_status(sess: Path, sid: str, *wanted: str) -> str:
    wait_until(lambda: status(sess, sid) in wanted)
    return status(sess, sid)


def listed(sess: Path) -> set[str]:
    return {p.parent.name for p in sess.glob("*/info")}


def spec_yaml(name: str, **fields: Any) -> str:
    lines = [f"name: {name}", f"image: {fields.pop('image', TERMINAL)}"]
    lines += [f"{k}: {json.dumps(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


# -- the tree --------------------------------------------------------------------------------


def test_layout_and_honest_sizes(sess: Path) -> None:
    names = set(os.listdir(sess))
    assert {"by-name", "by-kind", "by-status", "images", "context", "stats"} <= names
    assert "headless" in os.listdir(sess / "by-kind")
    assert "Completed" in os.listdir(sess / "by-status")
    for name in ("images", "context", "stats"):
        text = ok(f"cat {name}", sess)
        json.loads(text)
        assert ok(f"wc -c < {name}", sess).strip() == ok(f"stat -c %s {name}", sess).strip()
        assert len(text.encode()) == (sess / name).stat().st_size


def test_writes_elsewhere_fail_with_eperm(sess: Path) -> None:
    (sess / "w.yaml").write_text(spec_yaml("w", cmd="true"))
    [sid] = ids_of(sess, "w.yaml")
    for cmd in (
        "echo x > notes.txt",
        "mkdir newdir",
        f"echo x > {sid}/info",
        f"echo x >> {sid}/logs",
        f"mv {sid} renamed",
        "ln -s w.yaml link.yaml",
        "echo x > images",
        f"touch {sid}/new",
    ):
        r = sh(cmd, sess)
        assert r.returncode != 0, cmd
        assert "Operation not permitted" in r.stderr, (cmd, r.stderr)
    assert not (sess / "notes.txt").exists()


# -- every canfar session example, as file operations ----------------------------------------


def test_notebook_flexible_and_fixed(sess: Path) -> None:
    ok(
        "cat > nb.yaml <<'EOF'\nname: my-notebook\nimage: " + ASTROML + "\nkind: notebook\nEOF",
        sess,
    )
    ok(
        f"""echo '{{"name": "my-notebook", "image": "{ASTROML}", "kind": "notebook",
          "cores": 2, "ram": 4}}' > nb-fixed.json""",
        sess,
    )
    [flex], [fixed] = ids_of(sess, "nb.yaml"), ids_of(sess, "nb-fixed.json")
    assert json.loads((sess / flex / "info").read_text())["isFixedResources"] is False
    assert json.loads((sess / fixed / "info").read_text())["isFixedResources"] is True
    assert {flex, fixed} <= set(os.listdir(sess / "by-name" / "my-notebook"))
    wait_status(sess, flex, "Running")
    assert (sess / flex / "url").read_text().startswith("http")
    # fetch(kind="notebook", status="Running"): one index, one file test
    out = ok("grep -lx Running by-kind/notebook/*/status", sess)
    assert f"by-kind/notebook/{flex}/status" in out.split()
    before = json.loads((sess / flex / "info").read_text())["expiryTime"]
    ok(f"touch {flex}", sess)  # renew
    ok("touch by-kind/notebook/*", sess)
    assert json.loads((sess / flex / "info").read_text())["expiryTime"] >= before
    ok(f"rmdir {flex} {fixed}", sess)
    assert not {flex, fixed} & listed(sess)


def test_headless_hello_and_info_events_logs(sess: Path) -> None:
    ok(
        "cat > hello.yaml <<'EOF'\nname: my-headless\nimage: "
        + ASTROML
        + "\nkind: headless\ncmd: echo\nargs: Hello, World!\nEOF",
        sess,
    )
    assert ok("cat hello.yaml", sess) == (
        f"name: my-headless\nimage: {ASTROML}\nkind: headless\ncmd: echo\nargs: Hello, World!\n"
    )
    [sid] = ids_of(sess, "hello.yaml")
    assert not (sess / "hello.yaml.error").exists()
    assert wait_status(sess, sid, "Completed", "Failed") == "Completed"
    assert ok(f"cat {sid}/logs", sess) == "Hello, World!\n"
    assert ok(f"cat {sid}/spec", sess) == ok("cat hello.yaml", sess)
    info = json.loads(ok(f"cat {sid}/info", sess))
    assert (info["id"], info["name"], info["type"]) == (sid, "my-headless", "headless")
    events = ok(f"cat {sid}/events", sess).splitlines()
    assert events[0].split()[:3] == ["TYPE", "REASON", "MESSAGE"]
    assert ok("grep -lx Completed by-kind/headless/*/status", sess)
    for name in os.listdir(sess / sid):
        assert (sess / sid / name).stat().st_size == len((sess / sid / name).read_bytes()), name


def test_three_replicas_show_their_replica_id(sess: Path) -> None:
    ok(
        "cat > rep.yaml <<'EOF'\n"
        + spec_yaml("rep", cmd="printenv", args=["REPLICA_ID", "REPLICA_COUNT"], replicas=3)
        + "EOF",
        sess,
    )
    ids = ids_of(sess, "rep.yaml")
    assert len(ids) == 3
    assert {"rep-1", "rep-2", "rep-3"} <= set(os.listdir(sess / "by-name"))
    for i, sid in enumerate(ids, start=1):
        wait_status(sess, sid, "Completed")
        assert ok(f"cat {sid}/logs", sess) == f"{i}\n3\n"
        assert os.readlink(sess / "by-name" / f"rep-{i}" / sid) == f"../../{sid}"


def test_private_registry_credentials_never_show(sess: Path) -> None:
    text = (
        f"name: private-job\nimage: {PRIVATE}\nkind: headless\ncmd: 'true'\n"
        f"registry: {{username: username, secret: {SECRET}}}\n"
    )
    ok(f"cat > private.yaml <<'EOF'\n{text}EOF", sess)
    [sid] = ids_of(sess, "private.yaml")
    assert ok("cat private.yaml", sess) == text.replace(SECRET, '"***"')
    r = sh(f"grep -r {SECRET} . ", sess)
    assert r.returncode == 1, r.stdout  # in no file of the tree
    r = sh("printf 'name: p2\\nimage: " + PRIVATE + '\\ncmd: "true"\\n\' > noauth.yaml', sess)
    assert "No authentication provided" in (sess / "noauth.yaml.error").read_text()
    ok(f"rmdir {sid}", sess)


def test_rename_into_place_launches_once(sess: Path) -> None:
    """Editors that write a temporary file and rename it onto the spec."""
    (sess / ".tmp-edit").write_text(spec_yaml("renamed", cmd="true"))
    assert not (sess / ".tmp-edit.ids").exists()
    ok("mv .tmp-edit renamed.yaml", sess)
    assert len(ids_of(sess, "renamed.yaml")) == 1
    ok("mv renamed.yaml moved.yaml", sess)  # already launched: moves, no new launch
    assert len(os.listdir(sess / "by-name" / "renamed")) == 1
    assert len(ids_of(sess, "moved.yaml")) == 1
    (sess / ".tmp-bad").write_text("name: [")
    assert sh("mv .tmp-bad bad-rename.yaml", sess).returncode != 0  # the launch's EINVAL
    assert (sess / "bad-rename.yaml").read_text() == "name: ["
    assert "invalid YAML" in (sess / "bad-rename.yaml.error").read_text()


def test_cp_p_of_a_spec(sess: Path, tmp_path: Path) -> None:
    src = tmp_path / "cp.yaml"
    src.write_text(spec_yaml("cpp", cmd="true"))
    src.chmod(0o644)
    ok(f"cp -p {src} {sess}/cp.yaml", tmp_path)
    assert len(ids_of(sess, "cp.yaml")) == 1
    assert sh(f"chmod 600 {sess}/cp.yaml", tmp_path).returncode != 0  # another mode: EPERM


def test_registry_credentials_from_the_environment(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        CANFARFS_USER=USER,
        CANFAR_REGISTRY__USERNAME="carol",
        CANFAR_REGISTRY__SECRET=SECRET,
    )
    m = start_mount(
        tmp_path / "mnt",
        ["--local", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache")],
        env=env,
    )
    try:
        sess = m.path / "sessions"
        (sess / "p.yaml").write_text(spec_yaml("p", image=PRIVATE, cmd="true"))
        assert len(ids_of(sess, "p.yaml")) == 1  # a private image: the header was sent
        assert sh(f"grep -r {SECRET} .", sess).returncode == 1
    finally:
        m.unmount()
    assert SECRET not in m.log_text()


def close_errno(path: Path, data: bytes) -> int:
    """Write ``data`` to a new file and return close()'s errno (0 for success)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if data:
            os.write(fd, data)
    finally:
        try:
            os.close(fd)
        except OSError as exc:
            return exc.errno or -1
    return 0


BAD = {
    "invalid-yaml.yaml": b"name: [unclosed\n",
    "invalid-json.json": b'{"name": ',
    "unknown-field.yaml": f"name: x\nimage: {TERMINAL}\ncolour: red\n".encode(),
    "wrong-type.yaml": f"name: x\nimage: {TERMINAL}\ncores: four\n".encode(),
    "missing-image.yaml": b"name: x\n",
    "bad-kind.yaml": f"name: x\nimage: {TERMINAL}\nkind: laptop\n".encode(),
    "negative-cores.yaml": f"name: x\nimage: {TERMINAL}\ncores: -1\n".encode(),
    "replicas-0.yaml": f"name: x\nimage: {TERMINAL}\nreplicas: 0\n".encode(),
    "env-equals.yaml": f"name: x\nimage: {TERMINAL}\nenv: {{A: a=b}}\n".encode(),
    "huge.yaml": b"name: x\n#" + b"x" * 100_000 + b"\n",
    "binary.yaml": bytes(range(256)) * 4,
    "empty.yaml": b"",
}


def test_bad_specs_fail_close_with_einval(sess: Path) -> None:
    before = listed(sess)
    for name, data in BAD.items():
        assert close_errno(sess / name, data) == errno.EINVAL, name
        error = (sess / f"{name}.error").read_text()
        assert error.startswith(f"{name} was not launched"), error
        assert (sess / name).read_bytes() == data
        # printf > spec (a shell built-in) ignores close()'s error: the .ids the user
        # reads next fails with it.
        with pytest.raises(OSError) as e:
            (sess / f"{name}.ids").read_text()
        assert e.value.errno == errno.EINVAL
    assert listed(sess) == before
    ok("rm " + " ".join(BAD), sess)
    assert not any((sess / f"{n}.error").exists() for n in BAD)


def test_a_spec_name_with_no_room_for_its_companions_is_enametoolong(sess: Path) -> None:
    """statfs says 255: a spec name must leave room for .error (6 bytes)."""
    longest = "s" * 244 + ".yaml"  # 249 bytes: name.error is 255
    with pytest.raises(OSError) as e:
        (sess / ("s" * 245 + ".yaml")).write_text("name: x\n")
    assert e.value.errno == errno.ENAMETOOLONG
    assert close_errno(sess / longest, b"not: [a, valid spec") == errno.EINVAL
    assert (sess / f"{longest}.error").exists()
    ok(f"rm {longest}", sess)


def test_server_refusal_errno(sess: Path) -> None:
    assert close_errno(sess / "cores.yaml", spec_yaml("c", cores=200).encode()) == errno.EINVAL
    assert "Invalid value for 'cores'" in (sess / "cores.yaml.error").read_text()
    assert close_errno(sess / "priv.yaml", spec_yaml("p", image=PRIVATE).encode()) == errno.EACCES
    r = subprocess.run(
        f"head -1 {sess}/priv.yaml.ids", shell=True, capture_output=True, text=True, check=False
    )
    assert r.returncode != 0
    assert "Permission denied" in r.stderr


# -- following, editing, ending ----------------------------------------------------------------


def test_tail_f_follows_a_running_session(sess: Path, mount: Mount) -> None:
    home = mount.path / "arc" / "home" / USER
    (home / "count.sh").write_text(
        "i=1\nwhile [ $i -le 10 ]; do echo line $i; i=$((i+1)); sleep 0.3; done\n"
    )
    (sess / "count.yaml").write_text(
        spec_yaml("count", cmd="sh", args=[f"/arc/home/{USER}/count.sh"])
    )
    [sid] = ids_of(sess, "count.yaml")
    tail = subprocess.Popen(
        ["tail", "-n", "+1", "-f", str(sess / sid / "logs")], stdout=subprocess.PIPE, text=True
    )
    assert tail.stdout is not None
    lines, first_at_status = [], ""
    try:
        for _ in range(10):
            lines.append(tail.stdout.readline())
            if len(lines) == 1:
                first_at_status = status(sess, sid)
    finally:
        tail.kill()
        tail.wait()
        tail.stdout.close()
    assert lines == [f"line {i}\n" for i in range(1, 11)]
    assert first_at_status == "Running"  # it followed the session while it ran
    wait_status(sess, sid, "Completed")
    assert (sess / sid / "logs").read_text() == "".join(lines)


@pytest.mark.skipif(shutil.which("vim") is None, reason="needs vim")
def test_tail_F_follows_a_file_a_headless_job_appends_to(sess: Path, mount: Mount) -> None:
    """The job writes /arc/home/alice/job.log (the local arc tree); the mount's reader,
    at the end of its copy, sees each new version once the metadata TTL has passed."""
    log = mount.path / "arc" / "home" / USER / "job.log"
    out = mount.path.parent / "tail-job.out"
    (log.parent / "appender.sh").write_text(
        "for i in 1 2 3 4 5; do echo step $i >> /arc/home/alice/job.log; sleep 0.7; done\n"
    )
    spec = spec_yaml(
        "appender", kind="headless", cmd="/bin/sh", args=["/arc/home/alice/appender.sh"]
    )
    with open(out, "w") as sink:
        tail = subprocess.Popen(
            ["tail", "-n", "+1", "-s", "0.3", "-F", str(log)],
            stdout=sink,
            stderr=subprocess.DEVNULL,
        )
        try:
            (sess / "appender.yaml").write_text(spec)
            [sid] = ids_of(sess, "appender.yaml")
            wait_status(sess, sid, "Completed")
            wait_until(lambda: "step 5" in out.read_text(), timeout=15)
        finally:
            tail.terminate()
            tail.wait(10)
    assert [line for line in out.read_text().splitlines() if line.startswith("step")] == [
        f"step {i}" for i in range(1, 6)
    ]
    ok(f"rmdir {sid} && rm appender.yaml", sess)


def test_vim_saves_launch_once_each(sess: Path, tmp_path: Path) -> None:
    env = dict(os.environ, HOME=str(tmp_path))
    cmd = [
        "vim",
        "-u",
        "NONE",
        "-i",
        "NONE",
        "-N",
        "-es",
        "-c",
        "set swapfile",
        "-c",
        "e vimjob.yaml",
        "-c",
        f'call setline(1, ["name: vimjob", "image: {TERMINAL}", "cmd: \\"true\\""])',
        "-c",
        "w",
        "-c",
        'call setline(4, "cores: 1")',
        "-c",
        "w",
        "-c",
        "q",
    ]
    subprocess.run(cmd, cwd=sess, env=env, check=True, timeout=60)
    assert len(os.listdir(sess / "by-name" / "vimjob")) == 2
    assert not [n for n in os.listdir(sess) if n.startswith(".") or n.endswith("~")]
    assert (sess / "vimjob.yaml").read_text().endswith("cores: 1\n")


def test_rmdir_rm_r_and_bulk_destroy(sess: Path) -> None:
    for name in ("test", "other"):
        (sess / f"{name}.yaml").write_text(spec_yaml(name, cmd="true", replicas=2))
    (sess / "slow.yaml").write_text(spec_yaml("test-slow", cmd="sleep", args="30"))
    done, other = ids_of(sess, "test.yaml"), ids_of(sess, "other.yaml")
    [slow] = ids_of(sess, "slow.yaml")
    for sid in done + other:
        wait_status(sess, sid, "Completed")
    # destroy_with(prefix="test-", kind="headless", status="Completed"), as documented:
    ok(
        "find by-name -path 'by-name/test-*/*' -execdir test -L ../../by-kind/headless/{} "
        "-a -L ../../by-status/Completed/{} \\; -delete",
        sess,
    )
    left = listed(sess)
    assert not set(done) & left
    assert set(other) | {slow} <= left
    ok(f"rm -r {other[0]}", sess)
    ok(f"rmdir {other[1]}", sess)
    assert sh(f"rmdir by-status/Running/{slow}", sess).returncode != 0  # a link: use rm
    ok("rm by-name/test-slow/*", sess)
    assert not {slow, *other} & listed(sess)


def test_mv_of_a_session_out_of_the_mount_fails_and_leaves_it_running(
    sess: Path, tmp_path: Path
) -> None:
    """mv copies, then removes the source as rm -r does, which ends a session: the
    removal fails (EBUSY) after a copy, and the session keeps running; rmdir again ends
    it; rm -r of a session nobody just read still ends it at once."""
    (sess / "moved.yaml").write_text(spec_yaml("moved", cmd="sleep", args="30"))
    [sid] = ids_of(sess, "moved.yaml")
    wait_status(sess, sid, "Running")
    r = sh(f"mv {sid} {tmp_path}/backup", sess)
    assert r.returncode != 0
    assert "Device or resource busy" in r.stderr
    assert (tmp_path / "backup" / "info").exists()
    assert status(sess, sid) == "Running"
    ok(f"rmdir {sid}", sess)  # a second removal ends it
    assert sid not in listed(sess)
    ok("rm moved.yaml", sess)


def test_spec_removal_touches_no_session(sess: Path) -> None:
    (sess / "keep.yaml").write_text(spec_yaml("keep", cmd="sleep", args="30"))
    [sid] = ids_of(sess, "keep.yaml")
    ok("rm keep.yaml", sess)
    assert not (sess / "keep.yaml.ids").exists()
    assert sid in listed(sess)
    ok(f"rmdir {sid}", sess)


# -- the seed's combined workflow, shell tools only ---------------------------------------------


def test_combined_workflow(sess: Path, mount: Mount, tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("sessions see /arc only through a private mount namespace (root)")
    local = tmp_path / "local"
    (local / "observations").mkdir(parents=True)
    (local / "observations" / "a.txt").write_text("1 2 3\n")
    (local / "observations" / "b.txt").write_text("4 5\n")
    (local / "process_data.py").write_text(
        textwrap.dedent("""\
        import pathlib
        base = pathlib.Path("/arc/home/alice/analysis")
        (base / "output").mkdir(exist_ok=True)
        for f in sorted((base / "input").glob("*.txt")):
            total = sum(int(x) for x in f.read_text().split())
            (base / "output" / (f.stem + ".fits")).write_text(f"SIMPLE = T {total}\\n")
            print(f.name, total)
        """)
    )
    m = mount.path
    ok(
        f"mkdir -p {m}/arc/home/{USER}/analysis/input {m}/arc/home/{USER}/analysis/output && "
        f"cp observations/* {m}/arc/home/{USER}/analysis/input/ && "
        f"cp process_data.py {m}/arc/home/{USER}/analysis/",
        local,
    )
    ok(
        f"cat > {sess}/data-analysis.yaml <<'EOF'\nname: data-analysis\nimage: {ASTROML}\n"
        "kind: headless\ncmd: python3\n"
        f"args: [/arc/home/{USER}/analysis/process_data.py]\ncores: 4\nram: 16\nEOF",
        local,
    )
    sid = ok(f"cat {sess}/data-analysis.yaml.ids", local).strip()
    ok(
        f"until grep -qxE 'Completed|Failed' {sess}/{sid}/status; do sleep 0.2; done",
        local,
        timeout=60,
    )
    assert ok(f"cat {sess}/{sid}/status", local) == "Completed\n"
    assert ok(f"cat {sess}/{sid}/logs", local) == "a.txt 6\nb.txt 9\n"
    ok(f"rmdir {sess}/{sid}", local)
    assert sid not in listed(sess)
    out = f"{m}/arc/home/{USER}/analysis/output"
    assert (
        sh(
            f"for i in $(seq 20); do ls {out}/b.fits && exit 0; sleep 0.3; done; exit 1", local
        ).returncode
        == 0
    ), "files the session wrote under /arc must show"
    ok(f"mkdir results && cp {out}/*.fits results/", local)
    assert sorted(os.listdir(local / "results")) == ["a.fits", "b.fits"]


# -- cross-checks with the canfar client ------------------------------------------------------


CANFAR = textwrap.dedent("""
    import json, sys
    from canfar.sessions import Session
    s = Session(url=sys.argv[1], token=sys.argv[2])
    op = sys.argv[3]
    if op == "fetch":
        print(json.dumps(s.fetch()))
    elif op == "info":
        print(json.dumps(s.info(sys.argv[4:])))
    elif op == "create":
        print(json.dumps(s.create(name="from-canfar", image="skaha/terminal:1.1.1",
                                  kind="headless", cmd="echo", args="hi", replicas=2)))
""")


def canfar(mount: Mount, tmp_path: Path, *args: str) -> Any:
    pytest.importorskip("canfar")
    found = re.search(r"local platform at (\S+) \(data in (\S+)\)", mount.log_text())
    assert found, mount.log_text()
    token = (Path(found.group(2)) / "token").read_text().strip()
    env = clean_env(tmp_path)
    r = subprocess.run(
        [sys.executable, "-c", CANFAR, f"{found.group(1)}/skaha/v1", token, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_crosscheck_with_the_canfar_client(sess: Path, mount: Mount, tmp_path: Path) -> None:
    (sess / "x.yaml").write_text(spec_yaml("crosscheck", cmd="echo", args="x"))
    [mine] = ids_of(sess, "x.yaml")
    wait_status(sess, mine, "Completed")
    fetched = {s["id"]: s for s in canfar(mount, tmp_path, "fetch")}
    assert fetched[mine] == json.loads((sess / mine / "info").read_text())
    [info] = canfar(mount, tmp_path, "info", mine)
    assert info == json.loads((sess / mine / "info").read_text())
    theirs = canfar(mount, tmp_path, "create")
    assert len(theirs) == 2
    wait_until(lambda: set(theirs) <= listed(sess), timeout=5)
    assert {"from-canfar-1", "from-canfar-2"} <= set(os.listdir(sess / "by-name"))
    for sid in theirs:
        wait_status(sess, sid, "Completed")
        assert (sess / sid / "logs").read_text() == "hi\n"
