"""Properties set through the mount (chmod, setfattr) show at once and are never lost,
also on a file that has not reached the server yet (docs/semantics.md)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.mount_util import Rig, home, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse]


def server_props(r: Rig, service: str, path: str) -> str:
    got = r.node(service, path)
    assert got.status_code == 200, got.text
    return got.text


@pytest.mark.semantics("Permissions")
@pytest.mark.parametrize("service", ["arc", "vault"])
def test_cp_p_keeps_the_mode_of_a_new_file(rig: Rig, tmp_path: Path, service: str) -> None:
    """The mode is shown as copied, and recorded; a copy publishes nothing
    (docs/semantics.md, *Permissions*)."""
    src = tmp_path / "public.txt"
    src.write_text("shared results\n")
    src.chmod(0o604)
    dest = home(rig, service) / "public.txt"
    done = subprocess.run(
        ["cp", "-p", str(src), str(dest)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert stat.S_IMODE(dest.stat().st_mode) == 0o604
    base = "home/alice" if service == "arc" else "alice"
    doc = server_props(rig, service, f"{base}/public.txt")
    assert 'core#ispublic">false<' in doc
    assert "canfarfs#mode" in doc


@pytest.mark.semantics("Properties as extended attributes")
def test_setxattr_before_the_first_close_reaches_the_server(rig: Rig) -> None:
    path = home(rig, "arc") / "labelled.txt"
    with open(path, "w") as f:
        f.write("data\n")
        f.flush()
        os.setxattr(path, "user.description", b"a quick look")
        assert os.getxattr(path, "user.description") == b"a quick look"
    assert "a quick look" in server_props(rig, "arc", "home/alice/labelled.txt")
    assert os.getxattr(path, "user.description") == b"a quick look"


@pytest.mark.semantics("Permissions")
def test_a_mode_property_changed_by_setfattr_shows_at_once(rig: Rig) -> None:
    """Without dropping the kernel's cached attributes, ls -l showed the old mode for up
    to the attribute TTL (a file made private looked public)."""
    path = home(rig, "arc") / "flip.txt"
    path.write_text("x\n")

    def mode() -> str:
        return subprocess.run(
            ["ls", "-l", str(path)], capture_output=True, text=True, check=True
        ).stdout.split()[0]

    subprocess.run(["chmod", "o+r", str(path)], check=True)
    assert mode() == "-rw----r--"
    subprocess.run(["setfattr", "-n", "user.ispublic", "-v", "false", str(path)], check=True)
    assert mode() == "-rw-------"
    subprocess.run(["setfattr", "-n", "user.ispublic", "-v", "true", str(path)], check=True)
    assert mode() == "-rw----r--"
