"""The emulator proven by the real clients: the vos 3.7 CLI and ``vos.Client``.

Every test runs against both services (arc and vault) of a live emulator subprocess,
with a throw-away HOME holding a seeded registry cache (vospace-api.md §10.1, recipe A)
and ``--token``. What is asserted is what a user sees: exit codes, printed text, and
the bytes and properties the service then holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from canfarfs.vospace import props
from canfarfs.vospace.model import NodeType
from tests.emulator_util import BOB_TOKEN, LiveEmulator
from tests.vos_util import SERVICES, VosRig, vos_rig

EMPTY_MD5 = hashlib.md5(b"").hexdigest()  # noqa: S324 - the protocol's checksum
GMS = props.GROUP_PREFIX


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - the protocol's checksum


@pytest.fixture(params=sorted(SERVICES))
def rig(request: pytest.FixtureRequest, live: LiveEmulator, tmp_path: Path) -> Iterator[VosRig]:
    with vos_rig(SERVICES[request.param], live, tmp_path) as r:
        yield r


# A `vls -l` row: permissions, creator, groups and lock (free text), size, date, name.
LONG_ROW = re.compile(
    r"^(?P<perm>[-dlrwx]{10})\s+(?P<owner>\S+)\s+(?P<middle>.*?)\s*(?P<size>\d+) "
    r"(?P<date>\w{3} \d\d (?:\d\d:\d\d| \d{4})) (?P<name>.+)$"
)


def long_rows(text: str) -> dict[str, re.Match[str]]:
    rows = [LONG_ROW.match(line) for line in text.splitlines() if line.strip()]
    assert all(rows), f"unparsable vls -l output:\n{text}"
    names = [m["name"].split(" -> ")[0] for m in rows if m]
    assert len(names) == len(set(names)), f"vls -l printed duplicates:\n{text}"
    return {m["name"].split(" -> ")[0]: m for m in rows if m}


# -- listing --------------------------------------------------------------------------


def test_vls_lists_each_child_once_with_its_size(rig: VosRig) -> None:
    rig.upload("alpha.txt", b"a" * 11)
    rig.upload("beta.bin", os.urandom(4097))
    rig.mkdir("gamma")
    rig.upload("gamma/inner.txt", b"12345")
    rig.vos("vln", rig.remote("alpha.txt"), rig.remote("delta"))

    short = rig.vos("vls", rig.remote()).stdout.split()
    assert sorted(short) == ["alpha.txt", "beta.bin", "delta", "gamma"]
    assert len(short) == len(set(short)), "vls printed a child twice (limit=0 ignored?)"

    rows = long_rows(rig.vos("vls", "-l", rig.remote()).stdout)
    assert set(rows) == {"alpha.txt", "beta.bin", "delta", "gamma"}
    assert rows["alpha.txt"]["size"] == "11"
    assert rows["beta.bin"]["size"] == "4097"
    assert rows["gamma"]["perm"].startswith("d")
    assert rows["gamma"]["size"] == "5"  # a container's core#length is its subtree's bytes
    assert rows["delta"]["perm"].startswith("l")
    # vos writes "!" for "~" in the URIs it sends; either spelling names the same node
    assert rows["delta"]["name"].replace("!", "~").endswith(f"-> {rig.service.uri('alpha.txt')}")
    assert all(m["owner"] == "alice" for m in rows.values())

    rig.mkdir("empty")
    assert rig.vos("vls", rig.remote("empty")).stdout.strip() == ""


# -- copying bytes --------------------------------------------------------------------


def test_vcp_round_trips_empty_and_small_files_and_overwrites(rig: VosRig) -> None:
    for name, data in (("empty.bin", b""), ("small.txt", b"hello, vos\n")):
        (rig.work / name).write_bytes(data)
        rig.vos("vcp", name, rig.remote(name))
        node = rig.node(name)
        assert node.type is NodeType.DATA
        assert node.length == len(data)
        assert node.prop(props.MD5) in ((md5_hex(data),) if data else (None, EMPTY_MD5))

        rig.vos("vcp", rig.remote(name), f"back-{name}")
        assert (rig.work / f"back-{name}").read_bytes() == data

    (rig.work / "small.txt").write_bytes(b"new, longer contents\n")
    rig.vos("vcp", "small.txt", rig.remote("small.txt"))
    assert rig.download("small.txt") == b"new, longer contents\n"
    assert rig.node("small.txt").prop(props.MD5) == md5_hex(b"new, longer contents\n")


def test_vcp_50_mb_round_trip_is_byte_identical(rig: VosRig) -> None:
    data = os.urandom(50 * 1000 * 1000)
    (rig.work / "big.bin").write_bytes(data)
    rig.vos("vcp", "big.bin", rig.remote("big.bin"))

    node = rig.node("big.bin")
    assert node.length == len(data)
    assert node.prop(props.MD5) == md5_hex(data)
    assert rig.download("big.bin") == data

    rig.vos("vcp", rig.remote("big.bin"), "back.bin")
    assert (rig.work / "back.bin").read_bytes() == data


# -- containers and deletion ----------------------------------------------------------


def test_vmkdir_vrm_vrmdir(rig: VosRig) -> None:
    rig.vos("vmkdir", rig.remote("box"))
    assert rig.node("box").type is NodeType.CONTAINER

    again = rig.vos("vmkdir", rig.remote("box"), expect=17)
    assert "DuplicateNode" in again.stderr

    rig.upload("box/item.txt", b"inside\n")
    refused = rig.vos("vrmdir", rig.remote("box"), expect=255)
    assert "container node 'box' is not empty" in refused.stderr
    assert rig.children("box") == ["item.txt"]
    assert rig.download("box/item.txt") == b"inside\n"

    rig.vos("vrm", rig.remote("box/item.txt"))
    assert not rig.exists("box/item.txt")
    rig.vos("vrmdir", rig.remote("box"))
    assert not rig.exists("box")

    gone = rig.vos("vrm", rig.remote("box"), expect=2)
    assert "NodeNotFound" in gone.stderr
    orphan = rig.vos("vmkdir", rig.remote("nowhere/sub"), expect=2)
    assert "NotFound" in orphan.stderr
    assert not rig.exists("nowhere")


# -- moving ---------------------------------------------------------------------------


def test_vmv_renames_a_file_and_moves_it_into_a_container(rig: VosRig) -> None:
    data = os.urandom(3000)
    rig.upload("a.bin", data)
    rig.mkdir("dest")

    rig.vos("vmv", rig.remote("a.bin"), rig.remote("b.bin"))
    assert not rig.exists("a.bin")
    assert rig.download("b.bin") == data

    rig.vos("vmv", rig.remote("b.bin"), rig.remote("dest"))
    assert not rig.exists("b.bin")
    assert rig.children("dest") == ["b.bin"]
    assert rig.download("dest/b.bin") == data
    assert rig.node("dest/b.bin").prop(props.MD5) == md5_hex(data)


def test_vmv_renames_a_directory_and_moves_it_into_a_container(rig: VosRig) -> None:
    rig.mkdir("d1")
    rig.mkdir("d1/sub")
    rig.upload("d1/sub/leaf.txt", b"leaf\n")
    rig.mkdir("parent")

    rig.vos("vmv", rig.remote("d1"), rig.remote("d2"))
    assert not rig.exists("d1")
    assert rig.download("d2/sub/leaf.txt") == b"leaf\n"

    rig.vos("vmv", rig.remote("d2"), rig.remote("parent"))
    assert not rig.exists("d2")
    assert rig.children("parent") == ["d2"]
    assert rig.download("parent/d2/sub/leaf.txt") == b"leaf\n"
    assert rig.node("parent").length == len(b"leaf\n")


# -- links, permissions, tags, locks --------------------------------------------------


def test_vln_creates_a_link_that_vls_shows(rig: VosRig) -> None:
    rig.upload("target.txt", b"pointed at\n")
    rig.vos("vln", rig.remote("target.txt"), rig.remote("shortcut"))

    link = rig.node("shortcut")
    assert link.type is NodeType.LINK
    assert (link.target or "").replace("!", "~") == rig.service.uri("target.txt")

    rows = long_rows(rig.vos("vls", "-l", rig.remote()).stdout)
    assert rows["shortcut"]["perm"].startswith("l")
    assert (
        rows["shortcut"]["name"].replace("!", "~").endswith(f"-> {rig.service.uri('target.txt')}")
    )
    # the service follows the link when bytes are asked for through it
    assert rig.download("shortcut") == b"pointed at\n"


def test_vchmod_public_and_group_read(rig: VosRig) -> None:
    rig.upload("shared.txt", b"shared\n")
    node = rig.node("shared.txt")
    assert node.prop(props.ISPUBLIC) == "false"

    rig.vos("vchmod", "o+r", rig.remote("shared.txt"))
    assert rig.node("shared.txt").prop(props.ISPUBLIC) == "true"

    rig.vos("vchmod", "o-r", rig.remote("shared.txt"))
    assert rig.node("shared.txt").prop(props.ISPUBLIC) == "false"

    rig.vos("vchmod", "g+r", rig.remote("shared.txt"), "GroupA GroupB")
    assert rig.node("shared.txt").prop(props.GROUPREAD) == f"{GMS}GroupA {GMS}GroupB"
    rows = long_rows(rig.vos("vls", "-l", rig.remote()).stdout)
    assert rows["shared.txt"]["perm"] == "-rw-r-----"
    assert "GroupA GroupB" in rows["shared.txt"]["middle"]

    # Read permission is checked on every component, so bob (group survey-team) needs
    # group read on alice's allocation as well as on the file to read its bytes.
    bob_auth = {"Authorization": f"Bearer {BOB_TOKEN}"}
    with httpx2.Client(base_url=rig.live.url, headers=bob_auth, timeout=30) as bob:
        as_bob = f"/{rig.service.name}/files/{rig.service.home}/shared.txt"
        assert bob.get(as_bob, follow_redirects=True).status_code == 403
        rig.vos("vchmod", "g+r", rig.remote(), "survey-team")
        rig.vos("vchmod", "g+r", rig.remote("shared.txt"), "survey-team")
        assert bob.get(as_bob, follow_redirects=True).content == b"shared\n"

        rig.vos("vchmod", "g-r", rig.remote("shared.txt"))
        assert rig.node("shared.txt").prop(props.GROUPREAD) is None
        rows = long_rows(rig.vos("vls", "-l", rig.remote()).stdout)
        assert rows["shared.txt"]["perm"] == "-rw-------"
        assert bob.get(as_bob, follow_redirects=True).status_code == 403


def test_vtag_sets_reads_and_removes_a_property(rig: VosRig) -> None:
    rig.upload("tagged.fits", b"SIMPLE  =                    T")
    rig.vos("vtag", rig.remote("tagged.fits"), "quality=good")

    stored = {
        k: v
        for k, v in rig.node("tagged.fits").properties.items()
        if k.rpartition("#")[2] == "quality"
    }
    assert list(stored.values()) == ["good"]
    assert "good" in rig.vos("vtag", rig.remote("tagged.fits"), "quality").stdout

    rig.vos("vtag", rig.remote("tagged.fits"), "quality", "--remove")
    after = rig.node("tagged.fits").properties
    assert not [k for k in after if k.rpartition("#")[2] == "quality"]


def test_vlock_is_stored_by_vault_and_ignored_by_arc(rig: VosRig) -> None:
    rig.upload("precious.dat", b"do not delete\n")
    rig.vos("vlock", "--lock", rig.remote("precious.dat"))
    rows = long_rows(rig.vos("vls", "-l", rig.remote()).stdout)

    if rig.service.locks:
        assert rig.node("precious.dat").prop(props.ISLOCKED) == "true"
        assert "LOCKED" in rows["precious.dat"]["middle"]
        refused = rig.vos("vrm", rig.remote("precious.dat"), expect=255)
        assert "PermissionDenied" in refused.stderr
        assert rig.download("precious.dat") == b"do not delete\n"

        rig.vos("vlock", "--unlock", rig.remote("precious.dat"))
        assert rig.node("precious.dat").prop(props.ISLOCKED) is None
        rig.vos("vrm", rig.remote("precious.dat"))
    else:
        assert rig.node("precious.dat").prop(props.ISLOCKED) is None
        assert "LOCKED" not in rows["precious.dat"]["middle"]
        rig.vos("vrm", rig.remote("precious.dat"))
    assert not rig.exists("precious.dat")


# -- the library ----------------------------------------------------------------------

LIBRARY_SCRIPT = textwrap.dedent("""
    import json, sys
    import vos

    token, base = sys.argv[1], sys.argv[2]
    c = vos.Client(vospace_token=token)
    out = {}
    out["listdir"] = sorted(c.listdir(base, force=True))
    out["isdir"] = [c.isdir(base + "/lib"), c.isdir(base + "/lib/seed.txt")]
    out["isfile"] = [c.isfile(base + "/lib/seed.txt"), c.isfile(base + "/lib")]
    node = c.get_node(base + "/lib/seed.txt", limit=0, force=True)
    out["node"] = {"name": node.name, "type": node.type, "props": node.props}
    out["copy_up"] = c.copy("local.bin", base + "/lib/copied.bin")
    out["copy_down"] = c.copy(base + "/lib/copied.bin", "fetched.bin")
    c.move(base + "/lib/copied.bin", base + "/lib/moved.bin")
    out["after_move"] = sorted(c.listdir(base + "/lib", force=True))
    c.delete(base + "/lib/moved.bin")
    out["after_delete"] = sorted(c.listdir(base + "/lib", force=True))
    print(json.dumps(out))
""")


def test_vos_client_library_calls(rig: VosRig) -> None:
    rig.mkdir("lib")
    rig.upload("lib/seed.txt", b"seed\n")
    local = os.urandom(100_000)
    (rig.work / "local.bin").write_bytes(local)

    proc = subprocess.run(
        [sys.executable, "-c", LIBRARY_SCRIPT, rig.live.token, rig.remote()],
        env=rig.env,
        cwd=rig.work,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    assert out["listdir"] == ["lib"]
    assert out["isdir"] == [True, False]
    assert out["isfile"] == [True, False]
    assert out["node"]["name"] == "seed.txt"
    assert out["node"]["type"] == "vos:DataNode"
    assert out["node"]["props"]["length"] == "5"
    assert out["node"]["props"]["MD5"] == md5_hex(b"seed\n")
    assert out["copy_up"] == len(local)
    assert out["copy_down"] == len(local)
    assert (rig.work / "fetched.bin").read_bytes() == local
    assert out["after_move"] == ["moved.bin", "seed.txt"]
    assert out["after_delete"] == ["seed.txt"]
