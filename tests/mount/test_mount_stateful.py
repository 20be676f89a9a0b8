"""A stateful property test: random operations on the mount and on a local directory in
lockstep; after every step both must agree (outcome and contents).

CI runs STEPS (10,000 by default) steps per service; the long run is marked slow:
``CANFARFS_STATEFUL_STEPS=100000 pytest -m slow tests/mount/test_mount_stateful.py``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.mount_util import Mount, local_mount, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse]
USER = "alice"
STEPS_PER_CASE = 50
NAMES = st.sampled_from(["a", "b", "c", "d e", "f.fits"])
DIRS = st.sampled_from(["", "sub"])
DATA = st.binary(min_size=0, max_size=3000)
OFFSETS = st.integers(min_value=0, max_value=4000)


def outcome(fn: object, *args: object) -> object:
    """The result of an operation, or the class of error it raised."""
    try:
        return ("ok", fn(*args))  # type: ignore[operator]
    except FileNotFoundError:
        return ("err", "ENOENT")
    except FileExistsError:
        return ("err", "EEXIST")
    except IsADirectoryError:
        return ("err", "EISDIR")
    except NotADirectoryError:
        return ("err", "ENOTDIR")
    except OSError as exc:
        return ("err", exc.errno)


def write_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def create(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def read(path: Path) -> bytes:
    return path.read_bytes()


def listing(path: Path) -> list[str]:
    return sorted(os.listdir(path))


class Lockstep(RuleBasedStateMachine):
    """One random sequence: every rule runs on both trees and compares outcomes."""

    mount_root: Path
    local_root: Path
    counter = 0
    #: Steps run so far (an invariant runs after every step).
    steps = 0

    @initialize()
    def fresh(self) -> None:
        Lockstep.counter += 1
        name = f"case{Lockstep.counter}"
        self.remote = self.mount_root / name
        self.local = self.local_root / name
        self.remote.mkdir()
        self.local.mkdir()

    def both(self, fn: object, rel: str, *args: object) -> None:
        a = outcome(fn, self.remote / rel, *args)
        b = outcome(fn, self.local / rel, *args)
        assert a == b, f"{getattr(fn, '__name__', fn)}({rel!r}): mount {a} != local {b}"

    @rule(d=DIRS, name=NAMES, data=DATA)
    def create_file(self, d: str, name: str, data: bytes) -> None:
        self.both(create, os.path.join(d, name), data)

    @rule(d=DIRS, name=NAMES, offset=OFFSETS, data=DATA)
    def write_offset(self, d: str, name: str, offset: int, data: bytes) -> None:
        self.both(write_at, os.path.join(d, name), offset, data)

    @rule(d=DIRS, name=NAMES, data=DATA)
    def append_file(self, d: str, name: str, data: bytes) -> None:
        self.both(append, os.path.join(d, name), data)

    @rule(d=DIRS, name=NAMES, size=OFFSETS)
    def truncate(self, d: str, name: str, size: int) -> None:
        self.both(os.truncate, os.path.join(d, name), size)

    @rule(d=DIRS, name=NAMES)
    def read_back(self, d: str, name: str) -> None:
        self.both(read, os.path.join(d, name))

    @rule(d=DIRS, src=NAMES, dst=NAMES)
    def rename(self, d: str, src: str, dst: str) -> None:
        a = outcome(os.rename, self.remote / d / src, self.remote / d / dst)
        b = outcome(os.rename, self.local / d / src, self.local / d / dst)
        assert a == b, f"rename {src}->{dst}: mount {a} != local {b}"

    @rule(d=DIRS, name=NAMES)
    def unlink(self, d: str, name: str) -> None:
        self.both(os.unlink, os.path.join(d, name))

    @rule()
    def mkdir(self) -> None:
        self.both(os.mkdir, "sub")

    @rule()
    def rmdir(self) -> None:
        self.both(os.rmdir, "sub")

    @invariant()
    def same_listing(self) -> None:
        if hasattr(self, "remote"):
            Lockstep.steps += 1
            self.both(listing, "")


def run_lockstep(mount: Mount, tmp_path: Path, service: str, steps: int) -> None:
    base = mount.path / ("arc/home/" + USER if service == "arc" else "vault/" + USER)
    root = base / "stateful"
    root.mkdir(exist_ok=True)
    local = tmp_path / "reference"
    local.mkdir()
    Lockstep.mount_root = root
    Lockstep.local_root = local
    Lockstep.steps = 0
    first_case = Lockstep.counter  # case numbers go on across services (unique names)
    test = Lockstep.TestCase
    rounds = 0
    while Lockstep.steps < steps:  # hypothesis may end a case early: run until enough
        rounds += 1
        cases = max(1, (steps - Lockstep.steps) // STEPS_PER_CASE)
        test.settings = settings(
            max_examples=cases,
            stateful_step_count=STEPS_PER_CASE,
            deadline=None,
            database=None,
            derandomize=rounds == 1,
            suppress_health_check=list(HealthCheck),
        )
        test().runTest()
    print(
        f"{service}: {Lockstep.steps} steps in {Lockstep.counter - first_case} cases, no mismatch"
    )
    shutil.rmtree(local)


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    yield from local_mount(tmp_path_factory.mktemp("stateful"))


STEPS = int(os.environ.get("CANFARFS_STATEFUL_STEPS", "10000"))


@pytest.mark.parametrize("service", ["arc", "vault"])
def test_mount_matches_a_local_directory_step_for_step(
    mount: Mount, tmp_path: Path, service: str
) -> None:
    run_lockstep(mount, tmp_path, service, STEPS)


@pytest.mark.slow
@pytest.mark.parametrize("service", ["arc", "vault"])
def test_long_run_100k_steps(mount: Mount, tmp_path: Path, service: str) -> None:
    run_lockstep(mount, tmp_path, service, 100_000)
