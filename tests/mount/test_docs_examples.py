"""The examples in the docs run as tests, against real mounts of the local platform.

Which blocks run
    Every ``sh``, ``bash``, ``console`` and ``python`` fence on the pages in ``PAGES``
    is an example and must be marked by an HTML comment on the line(s) before it
    (invisible on the site and on GitHub)::

        <!-- test -->                        run it
        <!-- test: OPTION OPTION=VALUE -->   run it, with options (below)
        <!-- not-run: REASON -->             do not run it; REASON says why

    ``test_every_example_is_marked`` fails on an unmarked example, and every not-run
    block is reported as a skipped test with its reason, so nothing is left out
    silently.

How they run
    Each page gets a fresh ``HOME`` (a temporary directory) with ``USER=alice``, so
    ``~/canfar`` and ``$USER`` in the docs mean what they say, and paths in the output
    are shown as ``/home/alice``. The blocks of a page run in order and share their
    shell variables and working directory (as if typed into one terminal). Pages other
    than the quickstart (which mounts by itself) start with
    ``canfarfs mount ~/canfar --local ~/canfar-data`` already done, exactly as a user
    would run it; every page ends with an unmount (``fusermount3 -u``) and a check that
    the daemon logged no traceback. Run the whole module (or a whole page with
    ``-k PAGE``): a block on its own may miss what the blocks before it set up.

    * ``sh``/``bash``: the block runs as one bash script with ``set -e``; it must exit 0.
    * ``console``: ``$ `` starts a command (``> `` continues it, as a terminal shows
      heredocs); the lines up to the next ``$ `` are its expected output (stdout and
      stderr together). Output is compared with runs of whitespace made equal (so
      ``ls`` in columns matches ``ls`` in a pipe) and ``...`` matching anything. A
      command shown without output must print nothing. Each command must exit 0 unless
      the block has the option ``errors-shown``.
    * ``python``: runs with the venv's interpreter and must exit 0. With the option
      ``canfar`` it is a ``canfar`` client example instead: it runs against the same
      local platform the page's mount shows (``CANFAR_URL``/``CANFAR_TOKEN`` in the
      environment, a throw-away ``HOME``), in one Python process per page whose globals
      persist between blocks (so ``ids`` from a create is there for ``info(ids)``), and
      ``await`` at the top level works as in a notebook.

    Stand-ins for what a terminal user does by hand: ``tail -f`` (a shell function)
    follows a session's ``logs`` until the session has ended and then stops, as
    Ctrl-C would; ``xdg-open`` and ``BROWSER`` fetch the URL instead of opening a
    browser and fail unless it answers 200. The local platform allows more interactive
    sessions than the default five (``CANFARFS_SKAHA_MAX_SESSIONS``), since one page
    launches many notebooks, and notebooks start in 0.3 s instead of 1 s.

Options
    ``errors-shown``     commands may exit non-zero (their messages are checked)
    ``given=A,B``        set the scene first (see ``GIVEN``): ``mounted``, ``unmounted``,
                         ``dead-daemon`` (killed with unsaved bytes in ``draft.txt``),
                         ``arc-down`` (arc answers 500 to everything), ``uploads-fail``
                         (every PUT answered 500), ``server-recovered``,
                         ``open-file``, ``files-closed``, ``expired-certificate``,
                         ``file:NAME`` (a small text file ``~/NAME``),
                         ``fits:NAME`` (a 100×100 FITS image ``~/NAME``)
    ``needs=root``       needs root (sessions of the local platform see ``/arc`` only then)
    ``canfar``           a ``canfar`` client example (python)
"""

from __future__ import annotations

import ast
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest

from tests.mount_util import FUSE_OK, is_mounted

ROOT = Path(__file__).resolve().parents[2]
#: Pages whose examples must all be marked, in the order they run.
PAGES = [
    "README.md",
    "docs/index.md",
    "docs/quickstart.md",
    "docs/sessions.md",
    "docs/semantics.md",
    "docs/troubleshooting.md",
    "docs/architecture.md",
]
#: Pages that mount by themselves (the others start mounted).
SELF_MOUNTING = {"docs/quickstart.md"}
EXAMPLE_LANGS = {"sh", "bash", "console", "python", "py"}
SHOWN_HOME = "/home/alice"
USER = "alice"
BLOCK_TIMEOUT = 120.0

MARKER = re.compile(r"<!--\s*(test|not-run)\s*(?::\s*(.*?))?\s*-->\s*$", re.S)
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>[^`]*)$")
TAB = re.compile(r'^(?P<indent>\s*)===\s+"(?P<label>[^"]*)"')


# -- finding the examples ------------------------------------------------------------------


@dataclass
class Example:
    page: str
    line: int
    lang: str
    code: str
    kind: str | None = None  # "test", "not-run" or None (unmarked)
    options: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    tab: str = ""

    @property
    def id(self) -> str:
        name = Path(self.page).name.removesuffix(".md")
        return f"{name}:{self.line}"

    def given(self) -> list[str]:
        return [g for g in self.options.get("given", "").split(",") if g]


def check(ok: object, message: str) -> None:
    """Fail the example with ``message`` alone (the harness's traceback tells nothing)."""
    if not ok:
        pytest.fail(message, pytrace=False)


def parse_options(text: str) -> dict[str, str]:
    out = {}
    for token in text.split():
        key, _, value = token.partition("=")
        out[key] = value
    return out


def examples_of(page: str) -> list[Example]:
    """The fenced code blocks of ``page`` in example languages, with their markers."""
    lines = (ROOT / page).read_text().splitlines()
    found: list[Example] = []
    i = 0
    tabs: list[tuple[int, str]] = []
    while i < len(lines):
        line = lines[i]
        t = TAB.match(line)
        if t:
            indent = len(t.group("indent"))
            tabs = [(n, lab) for n, lab in tabs if n < indent] + [(indent, t.group("label"))]
        m = FENCE.match(line)
        if not m:
            i += 1
            continue
        indent, fence = m.group("indent"), m.group("fence")
        lang = (m.group("info").strip().split() or [""])[0].lstrip("{.").rstrip("}")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^\s*{re.escape(fence)}\s*$", lines[j]):
            body.append(
                lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip()
            )
            j += 1
        if lang in EXAMPLE_LANGS:
            ex = Example(page, i + 1, "python" if lang == "py" else lang, "\n".join(body) + "\n")
            ex.tab = next((lab for n, lab in reversed(tabs) if n < len(indent)), "")
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            start = k
            while start > 0 and "<!--" not in lines[start] and "-->" in lines[start]:
                start -= 1  # a marker comment over several lines
            comment = " ".join(x.strip() for x in lines[start : k + 1]) if k >= 0 else ""
            mm = MARKER.search(comment)
            if mm and comment.lstrip().startswith("<!--"):
                ex.kind = mm.group(1)
                if ex.kind == "test":
                    ex.options = parse_options(mm.group(2) or "")
                else:
                    ex.reason = (mm.group(2) or "").strip()
            found.append(ex)
        i = j + 1
    return found


ALL = [ex for page in PAGES if (ROOT / page).exists() for ex in examples_of(page)]


def test_every_example_is_marked() -> None:
    unmarked = [f"{ex.page}:{ex.line} ({ex.lang})" for ex in ALL if ex.kind is None]
    assert not unmarked, "examples without <!-- test --> or <!-- not-run: why -->:\n" + "\n".join(
        unmarked
    )
    assert all(ex.reason for ex in ALL if ex.kind == "not-run"), "a not-run needs a reason"
    known = {"errors-shown", "given", "needs", "canfar"}
    for ex in ALL:
        assert set(ex.options) <= known, f"{ex.id}: unknown options {set(ex.options) - known}"
        for g in ex.given():
            assert g in GIVEN or g.split(":", 1)[0] in ("file", "fits"), f"{ex.id}: given={g}"
        assert ex.options.get("canfar") is None or ex.lang == "python", ex.id


def test_the_pages_keep_their_examples() -> None:
    """Nothing silently dropped: each page keeps at least this many runnable examples."""
    minimum = {
        "README.md": 1,
        "docs/quickstart.md": 6,
        "docs/sessions.md": 40,
        "docs/semantics.md": 5,
        "docs/troubleshooting.md": 8,
    }
    counts = {p: sum(1 for ex in ALL if ex.page == p and ex.kind == "test") for p in minimum}
    for page, n in minimum.items():
        assert counts[page] >= n, (page, counts[page])
    assert sum(1 for ex in ALL if ex.options.get("canfar") is not None) >= 15


# -- output matching -----------------------------------------------------------------------


def expected_pattern(expected: str) -> re.Pattern[str]:
    """``...`` matches anything; any run of whitespace matches any run of whitespace."""
    parts = []
    for piece in re.split(r"(\.\.\.)", expected.strip()):
        if piece == "...":
            parts.append(r"[\s\S]*?")
        else:
            words = re.split(r"\s+", piece)
            parts.append(r"\s+".join(re.escape(w) for w in words))
    text = "".join(parts)
    text = re.sub(r"(\\s\+)+", r"\\s+", text)
    # whitespace next to a wildcard may be absent
    text = text.replace(r"\s+[\s\S]*?", r"\s*[\s\S]*?").replace(r"[\s\S]*?\s+", r"[\s\S]*?\s*")
    return re.compile(text)


def output_matches(expected: str, actual: str) -> bool:
    return expected_pattern(expected).fullmatch(actual.strip()) is not None


def parse_console(code: str) -> list[tuple[str, str]]:
    """A console block → [(command, expected output)]."""
    out: list[tuple[str, str]] = []
    cmd: list[str] | None = None
    expected: list[str] = []
    continuing = False
    for line in code.splitlines():
        if line.startswith("$ ") or line == "$":
            if cmd is not None:
                out.append(("\n".join(cmd), "\n".join(expected)))
            cmd, expected, continuing = [line[2:]], [], True
        elif continuing and (line.startswith("> ") or line == ">"):
            assert cmd is not None
            cmd.append(line[2:])
        else:
            continuing = False
            expected.append(line)
    if cmd is not None:
        out.append(("\n".join(cmd), "\n".join(expected)))
    return out


# -- the shell every block runs in -----------------------------------------------------------

PRELUDE = r"""
__base=" $(compgen -v | tr '\n' ' ') "
[ -f "$DOCTEST_STATE/vars.sh" ] && source "$DOCTEST_STATE/vars.sh"
cd "$(cat "$DOCTEST_STATE/cwd")"
# `tail -f FILE`: follow, and stop (as Ctrl-C would) once the session FILE belongs to has
# ended and tail has had time to print the rest; anything else is plain tail.
tail() {
  local a f="" follow=""
  for a in "$@"; do case "$a" in -f|--follow) follow=1 ;; -*) ;; *) f="$a" ;; esac; done
  if [ -z "$follow" ]; then command tail "$@"; return; fi
  command tail "$@" & local pid=$! n=0
  while [ $n -lt 600 ]; do
    if grep -qxE 'Completed|Failed|Succeeded|Error' "$(dirname "$f")/status" 2>/dev/null; then
      sleep 1.5; break
    fi
    sleep 0.1; n=$((n + 1))
  done
  kill $pid 2>/dev/null; wait $pid 2>/dev/null || true
}
"""

EPILOGUE = r"""
for __v in $(compgen -v); do
  case "$__base" in *" $__v "*) ;; *) case "$__v" in __*) ;; *) declare -p "$__v" ;; esac ;; esac
done > "$DOCTEST_STATE/vars.sh" 2>/dev/null
pwd > "$DOCTEST_STATE/cwd"
"""

OPENER = r"""#!/bin/sh
# Stands in for a browser: fetch the URL, fail unless it answers 200.
exec "{python}" -c \
  'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)' "$1"
"""

CANFAR_RUNNER = r"""
import ast, asyncio, contextlib, io, json, os, sys, traceback
out = os.fdopen(int(sys.argv[1]), "w")
namespace = {"__name__": "__main__"}
for line in sys.stdin:
    code = json.loads(line)
    printed = io.StringIO()
    result = {"ok": True, "output": ""}
    try:
        with contextlib.redirect_stdout(printed):
            compiled = compile(code, "<example>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            value = eval(compiled, namespace)
            if asyncio.iscoroutine(value):
                asyncio.run(value)
    except BaseException:
        result = {"ok": False, "output": traceback.format_exc()}
    result["output"] = printed.getvalue() + result["output"]
    out.write(json.dumps(result) + "\n")
    out.flush()
"""


class PageRunner:
    """One page's terminal: a HOME, the shell state between blocks, its mount, and a
    canfar client process for the ``canfar`` examples."""

    def __init__(self, page: str, base: Path) -> None:
        self.page = page
        self.base = base
        self.home = base / "home"
        self.home.mkdir(parents=True)
        self.state = base / "state"
        self.state.mkdir()
        (self.state / "cwd").write_text(str(self.home))
        self.bin = base / "bin"
        self.bin.mkdir()
        opener = self.bin / "xdg-open"
        opener.write_text(OPENER.format(python=sys.executable))
        opener.chmod(0o755)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CANFAR", "XDG_", "VOSPACE_", "PYTEST"))
        }
        env.update(
            HOME=str(self.home),
            USER=USER,
            LOGNAME=USER,
            LANG="C.UTF-8",
            COLUMNS="200",
            DOCTEST_STATE=str(self.state),
            PATH=f"{self.bin}:{Path(sys.executable).parent}:{env.get('PATH', '')}",
            BROWSER=str(opener),
            CANFARFS_SKAHA_PENDING_SECONDS="0.3",
            CANFARFS_SKAHA_MAX_SESSIONS="100",
        )
        env.pop("LC_ALL", None)
        self.env = env
        self.canfar: subprocess.Popen[str] | None = None
        self.canfar_out: int | None = None
        self.holders: list[subprocess.Popen[bytes]] = []
        self.daemon_logs_seen: list[str] = []

    # -- paths and the mount ------------------------------------------------------------

    @property
    def mountpoint(self) -> Path:
        return self.home / "canfar"

    @property
    def log_file(self) -> Path:
        return self.home / ".local/state/canfarfs/canfarfs.log"

    def canfarfs(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "canfarfs", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def mount(self) -> None:
        if is_mounted(self.mountpoint):
            return
        self.mountpoint.mkdir(exist_ok=True)
        r = self.canfarfs("mount", str(self.mountpoint), "--local", str(self.home / "canfar-data"))
        assert r.returncode == 0, r.stderr

    def daemon_pid(self) -> int | None:
        """The daemon's pid, from the control file (what ``canfarfs status`` reads)."""
        try:
            pid: int = json.loads((self.mountpoint / ".canfarfs-control").read_bytes())["pid"]
        except OSError:
            return None
        return pid

    def platform(self) -> tuple[str, str]:
        """The local platform's base URL (from the daemon's log) and token."""
        found = re.findall(r"local platform at (\S+) \(data in (\S+)\)", self.log_file.read_text())
        assert found, "no local platform in the log"
        url, data = found[-1]
        return url, (Path(data) / "token").read_text().strip()

    def unmount(self) -> None:
        """Unmount (the pages show ``canfarfs umount``; here plain fusermount3 is quicker)
        and wait for the daemon to exit, so its log is complete."""
        self.close_files()
        if not is_mounted(self.mountpoint):
            return
        pid = self.daemon_pid()
        r = subprocess.run(
            ["fusermount3", "-u", str(self.mountpoint)], capture_output=True, check=False
        )
        if r.returncode != 0:
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], check=False)
        if pid is not None:
            self._wait_gone(pid)

    @staticmethod
    def _wait_gone(pid: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)

    def close_files(self) -> None:
        for p in self.holders:
            p.kill()
            p.wait()
        self.holders.clear()

    def close(self) -> None:
        if self.canfar is not None:
            assert self.canfar.stdin is not None
            self.canfar.stdin.close()
            try:
                self.canfar.wait(20)
            except subprocess.TimeoutExpired:
                self.canfar.kill()
                self.canfar.wait()
            if self.canfar_out is not None:
                os.close(self.canfar_out)
        self.unmount()
        for d in self.home.glob("canfar*"):
            if d.is_dir() and is_mounted(d):
                subprocess.run(["fusermount3", "-uz", str(d)], check=False)
        log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        assert "Traceback" not in log, log[-5000:]

    # -- running blocks -----------------------------------------------------------------

    def normalise(self, text: str) -> str:
        return text.replace(str(self.home), SHOWN_HOME)

    def bash(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", PRELUDE + script + EPILOGUE],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def run_sh(self, ex: Example) -> None:
        r = self.bash("set -e\n" + ex.code + "\nset +e\n")
        check(
            r.returncode == 0,
            f"{ex.id} exited {r.returncode}\n--- output:\n{self.normalise(r.stdout + r.stderr)}",
        )

    def run_console(self, ex: Example) -> None:
        steps = parse_console(ex.code)
        outdir = self.base / "out"
        shutil.rmtree(outdir, ignore_errors=True)
        outdir.mkdir()
        script = []
        for n, (cmd, _) in enumerate(steps):
            script.append(f"{{ {cmd}\n}} >{outdir}/{n} 2>&1 </dev/null; echo $? >{outdir}/{n}.rc")
        r = self.bash("\n".join(script) + "\n")
        check(r.returncode == 0, f"{ex.id}: the block's shell failed\n{r.stdout}{r.stderr}")
        for n, (cmd, expected) in enumerate(steps):
            actual = self.normalise((outdir / str(n)).read_text(errors="replace"))
            rc = int((outdir / f"{n}.rc").read_text())
            where = f"{ex.id}, command {n + 1}: $ {cmd}"
            if "errors-shown" not in ex.options:
                check(rc == 0, f"{where}\nexited {rc}:\n{actual}")
            check(
                output_matches(expected, actual),
                f"{where}\n--- the docs show:\n{expected}\n--- it printed:\n{actual}",
            )

    def run_python(self, ex: Example) -> None:
        cwd = (self.state / "cwd").read_text().strip()
        r = subprocess.run(
            [sys.executable, "-c", ex.code],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        check(r.returncode == 0, f"{ex.id}:\n{self.normalise(r.stdout + r.stderr)}")

    def run_canfar(self, ex: Example) -> None:
        if self.canfar is None:
            self._start_canfar()
        assert self.canfar is not None
        assert self.canfar.stdin is not None
        assert self.canfar_out is not None
        self.canfar.stdin.write(json.dumps(ex.code) + "\n")
        self.canfar.stdin.flush()
        ready, _, _ = select.select([self.canfar_out], [], [], BLOCK_TIMEOUT)
        check(ready, f"{ex.id}: the canfar example did not finish")
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(self.canfar_out, 65536)
            check(chunk, f"{ex.id}: the canfar runner died (see {self.base}/canfar.log)")
            line += chunk
        result = json.loads(line)
        check(result["ok"], f"{ex.id}:\n{result['output']}")

    def _start_canfar(self) -> None:
        url, token = self.platform()
        home = self.base / "canfar-home"
        home.mkdir()
        env = {k: v for k, v in self.env.items() if not k.startswith("CANFAR")}
        env.update(HOME=str(home), CANFAR_URL=f"{url}/skaha/v1", CANFAR_TOKEN=token)
        read_fd, write_fd = os.pipe()
        log = (self.base / "canfar.log").open("w")
        self.canfar = subprocess.Popen(
            [sys.executable, "-u", "-c", CANFAR_RUNNER, str(write_fd)],
            env=env,
            cwd=self.home,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=log,
            text=True,
            pass_fds=(write_fd,),
        )
        log.close()
        os.close(write_fd)
        self.canfar_out = read_fd


# -- setting the scene ----------------------------------------------------------------------


def _faults(runner: PageRunner, plan: dict[str, object] | None) -> None:
    url, token = runner.platform()
    auth = {"Authorization": f"Bearer {token}"}
    if plan is None:
        r = httpx2.delete(f"{url}/_emulator/faults", headers=auth)
    else:
        r = httpx2.post(f"{url}/_emulator/faults", headers=auth, json=plan)
    assert r.status_code in (200, 204), r.text


def _dead_daemon(runner: PageRunner) -> None:
    """The daemon killed (SIGKILL) while ``draft.txt`` had unsaved bytes in it."""
    runner.mount()
    pid = runner.daemon_pid()
    assert pid is not None
    draft = runner.mountpoint / "arc/home" / USER / "draft.txt"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nf = open(sys.argv[1], 'w')\n"
            "f.write('unsaved work\\n'); f.flush(); print('written', flush=True)\n"
            "time.sleep(600)",
            str(draft),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline() == "written\n"
    os.kill(pid, signal.SIGKILL)
    runner._wait_gone(pid)
    writer.kill()
    writer.wait()
    writer.stdout.close()


def _open_file(runner: PageRunner) -> None:
    runner.mount()
    target = runner.mountpoint / "arc/home" / USER / "notes.txt"
    target.write_text("kept open\n")
    with target.open("rb") as f:  # the child keeps it open
        runner.holders.append(subprocess.Popen(["sleep", "600"], stdin=f))


def _expired_certificate(runner: PageRunner) -> None:
    """A canfar login (x509) whose proxy certificate expired yesterday."""
    import yaml

    from canfarfs.emulator.tls import mint_proxy

    cert = runner.home / ".ssl/cadcproxy.pem"
    cert.parent.mkdir(exist_ok=True)
    mint_proxy(runner.base / "ca", USER, cert, not_after=datetime.now(UTC) - timedelta(days=1))
    config = runner.home / ".canfar/config.yaml"
    config.parent.mkdir(exist_ok=True)
    url = "https://ws-uv.canfar.net"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 2,
                "active": {"authentication": "cadc", "server": "canfar"},
                "authentication": {
                    "cadc": {"mode": "x509", "idp": "cadc", "path": str(cert), "expiry": 0.0}
                },
                "servers": {
                    "canfar": {
                        "name": "canfar",
                        "idp": "cadc",
                        "uri": "ivo://cadc.nrc.ca/skaha",
                        "url": f"{url}/skaha",
                        "version": "v1",
                        "auths": ["x509"],
                        "storage": {
                            "arc": {"uri": "ivo://cadc.nrc.ca/arc", "url": f"{url}/arc"},
                            "vault": {
                                "uri": "ivo://cadc.nrc.ca/vault",
                                "url": "https://cadc-west-01.canfar.net/vault",
                            },
                        },
                    }
                },
            }
        )
    )
    config.chmod(0o600)


GIVEN = {
    "mounted": PageRunner.mount,
    "arc-down": lambda r: _faults(r, {"fail_rate": 1.0, "fail_status": 500, "path_prefix": "/arc"}),
    "unmounted": PageRunner.unmount,
    "dead-daemon": _dead_daemon,
    "uploads-fail": lambda r: _faults(
        r, {"fail_rate": 1.0, "methods": ["PUT"], "fail_status": 500}
    ),
    "server-recovered": lambda r: _faults(r, None),
    "open-file": _open_file,
    "files-closed": PageRunner.close_files,
    "expired-certificate": _expired_certificate,
}


def _local_file(runner: PageRunner, name: str, fits: bool) -> None:
    path = runner.home / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if fits:
        import numpy as np
        from astropy.io import fits as pyfits

        data = np.arange(100 * 100, dtype=np.float32).reshape(100, 100)
        pyfits.HDUList([pyfits.PrimaryHDU(data)]).writeto(path, overwrite=True)
    else:
        path.write_text(f"{name}: example data\n")


def set_scene(runner: PageRunner, ex: Example) -> None:
    for g in ex.given():
        kind, _, name = g.partition(":")
        if kind in ("file", "fits") and name:
            _local_file(runner, name, kind == "fits")
        else:
            GIVEN[g](runner)


# -- the tests ---------------------------------------------------------------------------


class Runners:
    """The current page's runner; moving to another page closes the previous one."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.current: PageRunner | None = None

    def get(self, page: str) -> PageRunner:
        if self.current is not None and self.current.page != page:
            self.close()
        if self.current is None:
            base = self.factory.mktemp(Path(page).name.removesuffix(".md"))
            self.current = PageRunner(page, base)
            if page not in SELF_MOUNTING:
                self.current.mount()
        return self.current

    def close(self) -> None:
        if self.current is not None:
            runner, self.current = self.current, None
            runner.close()


@pytest.fixture(scope="module")
def runners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runners]:
    r = Runners(tmp_path_factory)
    yield r
    r.close()


RUNNABLE = [ex for ex in ALL if ex.kind is not None]


@pytest.mark.fuse
@pytest.mark.parametrize("ex", RUNNABLE, ids=[ex.id for ex in RUNNABLE])
def test_example(ex: Example, runners: Runners) -> None:
    if ex.kind == "not-run":
        pytest.skip(f"not run ({ex.id}): {ex.reason}")
    if not FUSE_OK:
        pytest.skip("needs /dev/fuse and fusermount3")
    if ex.options.get("needs") == "root" and os.geteuid() != 0:
        pytest.skip("needs root (local sessions see /arc through a private mount namespace)")
    runner = runners.get(ex.page)
    set_scene(runner, ex)
    if ex.lang == "console":
        runner.run_console(ex)
    elif ex.lang == "python" and "canfar" in ex.options:
        runner.run_canfar(ex)
    elif ex.lang == "python":
        runner.run_python(ex)
    else:
        runner.run_sh(ex)


# -- the harness itself ---------------------------------------------------------------------


def test_output_matching() -> None:
    assert output_matches("arc  sessions  vault", "arc\nsessions\nvault\n")
    assert output_matches("id: ...\nCompleted", "id: abc123\nCompleted")
    assert output_matches("...", "anything at all\n")
    assert output_matches("", "")
    assert not output_matches("", "unexpected\n")
    assert not output_matches("Completed", "Failed")
    assert parse_console("$ cat > x <<'EOF'\n> a\n>\n> EOF\n$ ls\nx\n") == [
        ("cat > x <<'EOF'\na\n\nEOF", ""),
        ("ls", "x"),
    ]


def test_markers_are_found() -> None:
    text = textwrap.dedent("""\
        <!-- test: given=mounted errors-shown -->
        ```console
        $ ls
        ```

        === "tab"

            <!-- not-run: needs a CANFAR account -->

            ```sh
            canfar auth login
            ```
        """)
    page = ROOT / "tests" / ".doc-example-selftest.md"
    page.write_text(text)
    try:
        a, b = examples_of(str(page.relative_to(ROOT)))
    finally:
        page.unlink()
    assert (a.kind, a.options, a.lang) == (
        "test",
        {"given": "mounted", "errors-shown": ""},
        "console",
    )
    assert (b.kind, b.reason, b.tab, b.code) == (
        "not-run",
        "needs a CANFAR account",
        "tab",
        "canfar auth login\n",
    )
    assert ast.parse(CANFAR_RUNNER)
