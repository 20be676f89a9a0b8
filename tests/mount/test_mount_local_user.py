"""On the local platform, the mounting user is an ordinary user, even as root: the
service roots belong to a system identity, so the refusals a real user meets on CANFAR
are met here too (docs/emulator.md)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount_util import Mount, errno_of, local_mount, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse]


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    yield from local_mount(tmp_path_factory.mktemp("as-root"), user="root")


def test_root_on_the_local_platform_is_an_ordinary_user(mount: Mount) -> None:
    m = mount.path
    assert errno_of(os.mkdir, m / "arc" / "home" / "otheruser") == errno.EACCES
    assert errno_of(Path.write_text, m / "arc" / "foo", "x") == errno.EACCES
    assert errno_of(Path.write_text, m / "vault" / "results.fits", "x") == errno.EACCES
    assert errno_of(os.mkdir, m / "arc" / "projects" / "mine") == errno.EACCES
    (m / "arc" / "home" / "root" / "mine.txt").write_text("mine")
    (m / "vault" / "root" / "mine.txt").write_text("mine")
    assert (m / "vault" / "root" / "mine.txt").read_text() == "mine"
