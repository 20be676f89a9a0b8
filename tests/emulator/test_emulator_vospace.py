"""The emulator's VOSpace (arc, vault, minoc) at the HTTP level, in-process.

Each test states a behaviour of the real services (vospace-api.md) and checks it.
"""

from __future__ import annotations

import base64
import hashlib
import time

import httpx2
import pytest

from canfarfs.emulator.app import Emulator, build_emulator
from canfarfs.vospace import props
from canfarfs.vospace import xml as vxml
from canfarfs.vospace.model import Node, NodeType, Protocol, Transfer
from tests.emulator_util import BOB_TOKEN, TOKEN, LiveEmulator, make_client

ARC_HOME = "/arc/nodes/home/alice"
VAULT_HOME = "/vault/nodes/alice"
HOMES = {"arc": ("arc", "home/alice"), "vault": ("vault", "alice")}


def uri(service: str, path: str) -> str:
    return f"vos://cadc.nrc.ca~{service}/{path}"


def node_doc(
    service: str,
    path: str,
    kind: NodeType = NodeType.CONTAINER,
    properties: dict[str, str | None] | None = None,
    target: str | None = None,
) -> bytes:
    node = Node(
        uri=uri(service, path),
        type=kind,
        properties=properties or {},
        target=target,
        children=[] if kind is NodeType.CONTAINER else None,
    )
    return vxml.node_to_xml(node)


async def mkdir(client: httpx2.AsyncClient, service: str, path: str) -> httpx2.Response:
    return await client.put(f"/{service}/nodes/{path}", content=node_doc(service, path))


async def put_bytes(client: httpx2.AsyncClient, service: str, path: str, data: bytes) -> None:
    """Upload through the XML push negotiation, as vos does (works on arc and vault)."""
    t = Transfer(
        target=uri(service, path),
        direction="pushToVoSpace",
        protocols=[Protocol(uri="ivo://ivoa.net/vospace/core#httpsput")],
    )
    r = await client.post(
        f"/{service}/synctrans",
        content=vxml.transfer_to_xml(t),
        headers={"Content-Type": "text/xml"},
        follow_redirects=True,
    )
    assert r.status_code == 200, r.text
    details = vxml.parse_transfer(r.content)
    assert details.protocols, r.text
    endpoint = details.protocols[0].endpoint
    assert endpoint is not None
    put = await client.put(endpoint, content=data)
    assert put.status_code == 201, put.text


async def get_node(client: httpx2.AsyncClient, service: str, path: str, **params: str) -> Node:
    r = await client.get(f"/{service}/nodes/{path}", params=params)
    assert r.status_code == 200, r.text
    return vxml.parse_node(r.content)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324


# -- discovery -------------------------------------------------------------------------


async def test_capabilities_list_every_endpoint_with_a_bare_and_an_auth_interface(
    client: httpx2.AsyncClient,
) -> None:
    r = await client.get("/arc/capabilities")
    assert r.status_code == 200
    text = r.text
    for sid in (
        "VOSpace/v2.0#nodes",
        "VOSpace#sync-2.1",
        "VOSpace/v2.0#transfers",
        "VOSpace#files-proto",
        "recursive-delete-proto",
    ):
        assert sid in text
    assert "xmlns:xsi" in text
    assert text.count('<interface xsi:type="vs:ParamHTTP" role="std">') >= 14
    assert "http://emu.invalid/arc/nodes" in text


async def test_registry_lists_arc_vault_and_skaha(client: httpx2.AsyncClient) -> None:
    r = await client.get("/reg/resource-caps")
    lines = dict(line.split(" = ") for line in r.text.splitlines() if not line.startswith("#"))
    assert lines["ivo://cadc.nrc.ca/arc"] == "http://emu.invalid/arc/capabilities"
    assert lines["ivo://cadc.nrc.ca/vault"] == "http://emu.invalid/vault/capabilities"


async def test_allocations_exist_with_quota_and_owner(client: httpx2.AsyncClient) -> None:
    for service, path in HOMES.values():
        node = await get_node(client, service, path)
        assert node.prop(props.CREATOR) == "alice"
        assert node.prop(props.QUOTA) == str(10 * 1024**3)
        assert node.prop(props.DATE)


# -- creating, updating, deleting nodes ----------------------------------------------


@pytest.mark.parametrize("service", ["arc", "vault"])
async def test_create_container_then_duplicate_is_409(
    client: httpx2.AsyncClient, service: str
) -> None:
    svc, home = HOMES[service]
    r = await mkdir(client, svc, f"{home}/d")
    assert r.status_code == 201
    assert vxml.parse_node(r.content).type is NodeType.CONTAINER
    again = await mkdir(client, svc, f"{home}/d")
    assert again.status_code == 409
    assert again.text == f"DuplicateNode: {uri(svc, home + '/d')}\n"


async def test_create_under_missing_parent_is_container_not_found(
    client: httpx2.AsyncClient,
) -> None:
    r = await mkdir(client, "arc", "home/alice/missing/d")
    assert r.status_code == 404
    assert r.text.startswith("ContainerNotFound: ")


async def test_uri_mismatch_is_400(client: httpx2.AsyncClient) -> None:
    r = await client.put(f"{ARC_HOME}/a", content=node_doc("arc", "home/alice/b"))
    assert r.status_code == 400
    assert "vos URI mismatch" in r.text


async def test_accepts_bang_authority_and_any_prefix(client: httpx2.AsyncClient) -> None:
    doc = (
        '<node xmlns:ns1="http://www.ivoa.net/xml/VOSpace/v2.0" '
        'xmlns="http://www.ivoa.net/xml/VOSpace/v2.0" '
        'xmlns:vos="http://www.ivoa.net/xml/VOSpace/v2.0" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="vos:ContainerNode" '
        'uri="vos://cadc.nrc.ca!arc/home/alice/vosdir"><ns1:properties/><ns1:nodes/></node>'
    )
    r = await client.put(f"{ARC_HOME}/vosdir", content=doc.encode())
    assert r.status_code == 201, r.text


async def test_unknown_xsi_type_is_type_not_supported(client: httpx2.AsyncClient) -> None:
    doc = node_doc("arc", "home/alice/x").replace(b"vos:ContainerNode", b"vos:WeirdNode")
    r = await client.put(f"{ARC_HOME}/x", content=doc)
    assert r.status_code == 400
    assert r.text.startswith("TypeNotSupported")


async def test_update_merges_properties_and_nil_deletes(client: httpx2.AsyncClient) -> None:
    await mkdir(client, "vault", "alice/p")
    tag = "ivo://opencadc.org/tags#quality"
    r = await client.post(
        f"{VAULT_HOME}/p",
        content=node_doc("vault", "alice/p", properties={tag: "good", props.ISPUBLIC: "true"}),
    )
    assert r.status_code == 200
    node = await get_node(client, "vault", "alice/p")
    assert node.prop(tag) == "good"
    assert node.is_public
    await client.post(
        f"{VAULT_HOME}/p", content=node_doc("vault", "alice/p", properties={tag: None})
    )
    node = await get_node(client, "vault", "alice/p")
    assert tag not in node.properties
    assert node.is_public


async def test_immutable_properties_are_ignored_and_unknown_core_is_400(
    client: httpx2.AsyncClient,
) -> None:
    await mkdir(client, "arc", "home/alice/im")
    r = await client.post(
        f"{ARC_HOME}/im",
        content=node_doc(
            "arc", "home/alice/im", properties={props.CREATOR: "mallory", props.LENGTH: "99"}
        ),
    )
    assert r.status_code == 200
    node = await get_node(client, "arc", "home/alice/im")
    assert node.prop(props.CREATOR) == "alice"
    bad = await client.post(
        f"{ARC_HOME}/im",
        content=node_doc("arc", "home/alice/im", properties={props.CORE + "mtime": "x"}),
    )
    assert bad.status_code == 400
    assert "unrecognized property URI" in bad.text


async def test_delete_non_empty_container_is_400_with_the_real_text(
    client: httpx2.AsyncClient,
) -> None:
    await mkdir(client, "arc", "home/alice/full")
    await put_bytes(client, "arc", "home/alice/full/f", b"x")
    r = await client.delete(f"{ARC_HOME}/full")
    assert r.status_code == 400
    assert r.text == "container node 'full' is not empty\n"
    assert (await client.delete(f"{ARC_HOME}/full/f")).status_code == 200
    assert (await client.delete(f"{ARC_HOME}/full")).status_code == 200
    missing = await client.delete(f"{ARC_HOME}/full")
    assert missing.status_code == 404
    assert missing.text.startswith("NodeNotFound: Target ")


async def test_vault_lock_refuses_delete_but_not_property_updates(
    client: httpx2.AsyncClient,
) -> None:
    await put_bytes(client, "vault", "alice/locked", b"data")
    await client.post(
        f"{VAULT_HOME}/locked",
        content=node_doc("vault", "alice/locked", NodeType.DATA, {props.ISLOCKED: "true"}),
    )
    r = await client.delete(f"{VAULT_HOME}/locked")
    assert r.status_code == 403
    assert r.text.startswith("PermissionDenied")
    unlock = await client.post(
        f"{VAULT_HOME}/locked",
        content=node_doc("vault", "alice/locked", NodeType.DATA, {props.ISLOCKED: None}),
    )
    assert unlock.status_code == 200
    assert (await client.delete(f"{VAULT_HOME}/locked")).status_code == 200


async def test_arc_does_not_store_the_lock(client: httpx2.AsyncClient) -> None:
    await put_bytes(client, "arc", "home/alice/nolock", b"data")
    await client.post(
        f"{ARC_HOME}/nolock",
        content=node_doc("arc", "home/alice/nolock", NodeType.DATA, {props.ISLOCKED: "true"}),
    )
    node = await get_node(client, "arc", "home/alice/nolock")
    assert props.ISLOCKED not in node.properties


async def test_link_nodes_and_intermediate_links_are_followed(
    client: httpx2.AsyncClient,
) -> None:
    await mkdir(client, "arc", "home/alice/real")
    await put_bytes(client, "arc", "home/alice/real/f.txt", b"through the link")
    r = await client.put(
        f"{ARC_HOME}/ln",
        content=node_doc(
            "arc", "home/alice/ln", NodeType.LINK, target=uri("arc", "home/alice/real")
        ),
    )
    assert r.status_code == 201, r.text
    link = await get_node(client, "arc", "home/alice/ln")
    assert link.type is NodeType.LINK
    assert link.target == uri("arc", "home/alice/real")
    through = await client.get("/arc/files/home/alice/ln/f.txt")
    assert through.content == b"through the link"
    external = await client.put(
        f"{ARC_HOME}/ext",
        content=node_doc("arc", "home/alice/ext", NodeType.LINK, target="https://example.org/x"),
    )
    assert external.status_code == 400
    assert external.text == "link to external resource\n"


# -- listings --------------------------------------------------------------------------


async def _fill(client: httpx2.AsyncClient, service: str, home: str, n: int) -> None:
    await mkdir(client, service, f"{home}/many")
    for i in range(n):
        r = await client.put(
            f"/{service}/nodes/{home}/many/f{i:03d}",
            content=node_doc(service, f"{home}/many/f{i:03d}", NodeType.DATA),
        )
        assert r.status_code == 201


async def test_arc_ignores_limit_except_zero_and_refuses_the_cursor(
    client: httpx2.AsyncClient,
) -> None:
    await _fill(client, "arc", "home/alice", 12)
    assert len((await get_node(client, "arc", "home/alice/many", limit="5")).children or []) == 12
    assert (await get_node(client, "arc", "home/alice/many", limit="0")).children == []
    r = await client.get(f"{ARC_HOME}/many", params={"uri": uri("arc", "home/alice/many/f003")})
    assert r.status_code == 400
    assert r.text.startswith("OptionNotSupported")


async def test_vault_pages_by_name_with_an_inclusive_cursor(client: httpx2.AsyncClient) -> None:
    await _fill(client, "vault", "alice", 12)
    first = await get_node(client, "vault", "alice/many", limit="5")
    names = [c.name for c in first.children or []]
    assert names == ["f000", "f001", "f002", "f003", "f004"]
    nxt = await get_node(
        client, "vault", "alice/many", limit="5", uri=uri("vault", "alice/many/f004")
    )
    assert [c.name for c in nxt.children or []] == ["f004", "f005", "f006", "f007", "f008"]
    bad = await client.get(f"{VAULT_HOME}/many", params={"uri": uri("vault", "alice/x/y")})
    assert bad.status_code == 400
    assert bad.text.startswith("InvalidURI: uri parameter")


async def test_listing_gives_attributes_of_children(client: httpx2.AsyncClient) -> None:
    await put_bytes(client, "arc", "home/alice/sized", b"12345")
    listing = await get_node(client, "arc", "home/alice")
    child = next(c for c in listing.children or [] if c.name == "sized")
    assert child.length == 5
    assert child.prop(props.MD5) == hashlib.md5(b"12345").hexdigest()  # noqa: S324
    assert listing.length == 5


async def test_bad_limit_sort_and_detail_are_400(client: httpx2.AsyncClient) -> None:
    assert (await client.get(ARC_HOME, params={"limit": "-1"})).text == (
        "InvalidArgument: value for limit must be a positive integer.\n"
    )
    assert (await client.get(ARC_HOME, params={"sort": "size"})).text == "sort by size\n"
    assert (await client.get(ARC_HOME, params={"detail": "huge"})).status_code == 400


async def test_detail_min_has_no_properties_and_max_adds_readable(
    client: httpx2.AsyncClient,
) -> None:
    r = await client.get(ARC_HOME, params={"detail": "min"})
    assert b"<vos:property " not in r.content
    node = await get_node(client, "arc", "home/alice", detail="max")
    assert node.prop(props.READABLE) == "true"
    assert node.prop(props.WRITABLE) == "true"


async def test_view_data_redirects_to_files(client: httpx2.AsyncClient) -> None:
    await put_bytes(client, "arc", "home/alice/v.txt", b"v")
    r = await client.get(f"{ARC_HOME}/v.txt", params={"view": "data"})
    assert r.status_code == 303
    assert r.headers["location"] == "http://emu.invalid/arc/files/home/alice/v.txt"


# -- bytes -----------------------------------------------------------------------------


async def test_arc_files_put_checks_digest_and_answers_201_with_digest(
    client: httpx2.AsyncClient,
) -> None:
    data = b"hello arc\n"
    r = await client.put(
        "/arc/files/home/alice/h.txt",
        content=data,
        headers={"Digest": f"md5={md5_b64(data)}", "Content-Type": "text/plain"},
    )
    assert r.status_code == 201
    assert r.headers["digest"] == f"md5={md5_b64(data)}"
    node = await get_node(client, "arc", "home/alice/h.txt")
    assert node.prop(props.TYPE) == "text/plain"
    bad = await client.put(
        "/arc/files/home/alice/h.txt",
        content=b"other",
        headers={"Digest": f"md5={md5_b64(b'nope')}"},
    )
    assert bad.status_code == 412
    assert bad.text.startswith("checksum mismatch: md5:")
    node = await get_node(client, "arc", "home/alice/h.txt")
    assert node.length == 0, "a failed overwrite leaves an empty file, as arc does"


async def test_arc_files_ignores_range_and_answers_204_when_empty(
    client: httpx2.AsyncClient,
) -> None:
    await client.put("/arc/files/home/alice/r.bin", content=b"0123456789")
    r = await client.get("/arc/files/home/alice/r.bin", headers={"Range": "bytes=2-5"})
    assert r.status_code == 200
    assert r.content == b"0123456789"
    assert r.headers["content-disposition"] == 'inline; filename="r.bin"'
    await client.put(
        f"{ARC_HOME}/empty", content=node_doc("arc", "home/alice/empty", NodeType.DATA)
    )
    empty = await client.get("/arc/files/home/alice/empty")
    assert empty.status_code == 204
    assert empty.content == b""


async def test_arc_files_put_to_missing_parent_and_on_container(
    client: httpx2.AsyncClient,
) -> None:
    r = await client.put("/arc/files/home/alice/nope/f", content=b"x")
    assert r.status_code == 404
    assert r.text.startswith("not found: parent container")
    await mkdir(client, "arc", "home/alice/dd")
    r = await client.put("/arc/files/home/alice/dd", content=b"x")
    assert r.status_code == 400
    assert r.text == "not a data node\n"


async def test_vault_files_redirects_to_minoc_which_honours_one_range(
    client: httpx2.AsyncClient,
) -> None:
    data = bytes(range(256)) * 40
    await put_bytes(client, "vault", "alice/r.bin", data)
    r = await client.get("/vault/files/alice/r.bin")
    assert r.status_code == 303
    minoc = r.headers["location"]
    assert "/minoc/files/preauth:" in minoc
    assert "cadc:vault/" in minoc
    part = await client.get(minoc, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = await client.get(minoc, headers={"Range": "bytes=10000-"})
    assert tail.content == data[10000:]
    beyond = await client.get(minoc, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"
    several = await client.get(minoc, headers={"Range": "bytes=0-1,5-6"})
    assert several.status_code == 200
    assert several.content == data
    anonymous = await make_client_anon_get(client, minoc)
    assert anonymous == data, "a pre-authorised URL needs no other credential"


async def make_client_anon_get(client: httpx2.AsyncClient, url: str) -> bytes:
    r = await client.get(url, headers={"Authorization": ""})
    return r.content


async def test_minoc_refuses_an_empty_put(client: httpx2.AsyncClient) -> None:
    t = Transfer(
        target=uri("vault", "alice/e"),
        direction="pushToVoSpace",
        protocols=[Protocol(uri="ivo://ivoa.net/vospace/core#httpsput")],
    )
    r = await client.post(
        "/vault/synctrans", content=vxml.transfer_to_xml(t), follow_redirects=True
    )
    endpoint = vxml.parse_transfer(r.content).protocols[0].endpoint
    assert endpoint is not None
    put = await client.put(endpoint, content=b"")
    assert put.status_code == 400
    assert put.text == "invalid input: no content\n"


async def test_synctrans_parameter_form_redirects_straight_to_bytes(
    client: httpx2.AsyncClient,
) -> None:
    await put_bytes(client, "arc", "home/alice/p.txt", b"param form")
    r = await client.post(
        "/arc/synctrans",
        params={
            "TARGET": uri("arc", "home/alice/p.txt"),
            "DIRECTION": "pullFromVoSpace",
            "PROTOCOL": "ivo://ivoa.net/vospace/core#httpsget",
            "SECURITYMETHOD": "",
            "REQUEST": "redirect",
        },
    )
    assert r.status_code == 303
    assert "/files" in r.headers["location"]
    got = await client.get(r.headers["location"], headers={"Authorization": ""})
    assert got.content == b"param form"
    missing = await client.post(
        "/arc/synctrans",
        params={"TARGET": uri("arc", "home/alice/none"), "DIRECTION": "pullFromVoSpace"},
    )
    assert missing.status_code == 404


async def test_failed_negotiation_is_a_job_error_with_no_protocols(
    client: httpx2.AsyncClient,
) -> None:
    t = Transfer(
        target=uri("arc", "home/alice/absent"),
        direction="pullFromVoSpace",
        protocols=[Protocol(uri="ivo://ivoa.net/vospace/core#httpsget")],
    )
    r = await client.post("/arc/synctrans", content=vxml.transfer_to_xml(t))
    assert r.status_code == 303
    job_url = r.headers["location"].rsplit("/results", 1)[0]
    details = await client.get(r.headers["location"], follow_redirects=True)
    assert vxml.parse_transfer(details.content).protocols == []
    assert (await client.get(job_url + "/phase")).text == "ERROR"
    assert (await client.get(job_url + "/error")).text.startswith("NodeNotFound")


async def test_quota_is_enforced_with_413(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    from canfarfs.emulator.config import load_config

    root = Path(str(tmp_path)) / "q"
    emu = build_emulator(load_config(root, user="alice", token="t", quota=1000))
    try:
        async with make_client(emu, "t") as c:
            ok = await c.put("/arc/files/home/alice/a", content=b"x" * 600)
            assert ok.status_code == 201
            over = await c.put("/arc/files/home/alice/b", content=b"x" * 600)
            assert over.status_code == 413
            assert over.text == "limit: 400\n"
            t = Transfer(
                target=uri("vault", "alice/big"),
                direction="pushToVoSpace",
                protocols=[Protocol(uri="ivo://ivoa.net/vospace/core#httpsput")],
                length=5000,
            )
            r = await c.post("/vault/synctrans", content=vxml.transfer_to_xml(t))
            job = r.headers["location"].rsplit("/results", 1)[0]
            assert (await c.get(job + "/error")).text.startswith("QuotaExceeded")
    finally:
        emu.close()


# -- moves and recursive delete ----------------------------------------------------------


async def _move(client: httpx2.AsyncClient, service: str, src: str, dst: str) -> tuple[str, str]:
    t = Transfer(target=uri(service, src), direction=uri(service, dst), keep_bytes=False)
    r = await client.post(f"/{service}/transfers", content=vxml.transfer_to_xml(t))
    assert r.status_code == 303
    job = r.headers["location"]
    assert (await client.get(job)).status_code == 200
    run = await client.post(job + "/phase", data={"PHASE": "RUN"})
    assert run.status_code == 303
    phase = (await client.get(job + "/phase")).text
    error = (await client.get(job + "/error")).text if phase == "ERROR" else ""
    return phase, error


@pytest.mark.parametrize("service", ["arc", "vault"])
async def test_move_renames_moves_into_containers_and_never_overwrites(
    client: httpx2.AsyncClient, service: str
) -> None:
    svc, home = HOMES[service]
    await mkdir(client, svc, f"{home}/src")
    await put_bytes(client, svc, f"{home}/src/f", b"moved bytes")
    await mkdir(client, svc, f"{home}/into")
    assert await _move(client, svc, f"{home}/src", f"{home}/renamed") == ("COMPLETED", "")
    assert await _move(client, svc, f"{home}/renamed", f"{home}/into") == ("COMPLETED", "")
    moved = await get_node(client, svc, f"{home}/into/renamed/f")
    assert moved.length == len(b"moved bytes")
    await put_bytes(client, svc, f"{home}/other", b"o")
    phase, error = await _move(client, svc, f"{home}/other", f"{home}/into/renamed/f")
    assert phase == "ERROR"
    assert error.startswith("DuplicateNode: destination is an existing DataNode")
    phase, error = await _move(client, svc, f"{home}/into", f"{home}/into/renamed/sub")
    assert phase == "ERROR"
    assert error.startswith("InvalidArgument: Cannot move container node into its descendants")
    phase, error = await _move(client, svc, f"{home}/ghost", f"{home}/g2")
    assert (phase, error.split(":")[0]) == ("ERROR", "NodeNotFound")


async def test_moved_bytes_are_still_readable(client: httpx2.AsyncClient) -> None:
    await put_bytes(client, "arc", "home/alice/before", b"payload")
    assert (await _move(client, "arc", "home/alice/before", "home/alice/after"))[0] == "COMPLETED"
    r = await client.get("/arc/files/home/alice/after")
    assert r.content == b"payload"


async def test_async_delete_removes_a_tree(client: httpx2.AsyncClient) -> None:
    await mkdir(client, "vault", "alice/tree")
    await mkdir(client, "vault", "alice/tree/sub")
    await put_bytes(client, "vault", "alice/tree/sub/f", b"1")
    r = await client.post("/vault/async-delete", data={"target": uri("vault", "alice/tree")})
    assert r.status_code == 303
    job = r.headers["location"]
    await client.post(job + "/phase", data={"phase": "RUN"})
    doc = vxml.parse_job((await client.get(job, params={"WAIT": "6"})).content)
    assert doc.phase.value == "COMPLETED"
    assert doc.results == {"successcount": "final:3", "errorcount": "final:0"}
    assert (await client.get(f"{VAULT_HOME}/tree")).status_code == 404


# -- permissions -----------------------------------------------------------------------


async def test_other_users_need_public_or_group_permission(
    emulator: Emulator, client: httpx2.AsyncClient
) -> None:
    await put_bytes(client, "arc", "home/alice/private.txt", b"secret")
    async with make_client(emulator, BOB_TOKEN) as bob, make_client(emulator, None) as anon:
        assert (await bob.get("/arc/files/home/alice/private.txt")).status_code == 403
        assert (await anon.get("/arc/files/home/alice/private.txt")).status_code == 403
        await client.post(
            f"{ARC_HOME}/private.txt",
            content=node_doc(
                "arc", "home/alice/private.txt", NodeType.DATA, {props.ISPUBLIC: "true"}
            ),
        )
        # Read permission is checked on intermediate containers too (vospace-api.md §3.1).
        assert (await anon.get("/arc/files/home/alice/private.txt")).status_code == 403
        await client.post(
            ARC_HOME, content=node_doc("arc", "home/alice", properties={props.ISPUBLIC: "true"})
        )
        assert (await anon.get("/arc/files/home/alice/private.txt")).content == b"secret"
        assert (await bob.put("/arc/files/home/alice/bob.txt", content=b"b")).status_code == 403
        await mkdir(client, "arc", "home/alice/shared")
        await client.post(
            f"{ARC_HOME}/shared",
            content=node_doc(
                "arc",
                "home/alice/shared",
                properties={props.GROUPWRITE: "ivo://cadc.nrc.ca/gms?survey-team"},
            ),
        )
        ok = await bob.put("/arc/files/home/alice/shared/bob.txt", content=b"b")
        assert ok.status_code == 201
        assert (await anon.put("/arc/files/home/alice/shared/x", content=b"b")).status_code == 403


async def test_wrong_token_is_401_and_delegation_header_works(
    emulator: Emulator,
) -> None:
    async with make_client(emulator, "wrong") as bad:
        r = await bad.get(ARC_HOME)
        assert r.status_code == 401
        assert r.text.startswith("NotAuthenticated")
    async with make_client(emulator, None) as anon:
        r = await anon.get(ARC_HOME, headers={"X-CADC-DelegationToken": "test-token-alice"})
        assert r.status_code == 200


# -- persistence and faults ------------------------------------------------------------


async def test_data_survives_a_restart(emulator: Emulator, client: httpx2.AsyncClient) -> None:
    await put_bytes(client, "vault", "alice/keep.bin", b"kept across restarts")
    await client.post(
        f"{VAULT_HOME}/keep.bin",
        content=node_doc("vault", "alice/keep.bin", NodeType.DATA, {"ivo://x#k": "v"}),
    )
    emulator.close()
    again = build_emulator(emulator.config)
    try:
        async with make_client(again) as c:
            node = await get_node(c, "vault", "alice/keep.bin")
            assert node.prop("ivo://x#k") == "v"
            r = await c.get("/vault/files/alice/keep.bin", follow_redirects=True)
            assert r.content == b"kept across restarts"
    finally:
        again.close()


async def test_fault_knobs_need_the_token_and_inject_errors(
    emulator: Emulator, client: httpx2.AsyncClient
) -> None:
    async with make_client(emulator, BOB_TOKEN) as bob:
        denied = await bob.post("/_emulator/faults", json={"fail_next": 1})
        assert denied.status_code == 403
    r = await client.post("/_emulator/faults", json={"fail_next": 2, "fail_status": 503})
    assert r.status_code == 200
    assert (await client.get(ARC_HOME)).status_code == 503
    assert (await client.get(ARC_HOME)).status_code == 503
    assert (await client.get(ARC_HOME)).status_code == 200
    bad = await client.post("/_emulator/faults", json={"nonsense": 1})
    assert bad.status_code == 400
    stats = (await client.get("/_emulator/stats")).json()
    assert stats["requests"] >= 3


async def test_dropped_connection_mid_body_reaches_the_client(
    emulator: Emulator, client: httpx2.AsyncClient
) -> None:
    await client.put("/arc/files/home/alice/drop.bin", content=b"z" * 100_000)
    await client.post("/_emulator/faults", json={"drop_next": 1, "drop_after": 1000})
    with pytest.raises(Exception, match="drop"):
        await client.get("/arc/files/home/alice/drop.bin")
    r = await client.get("/arc/files/home/alice/drop.bin")
    assert r.content == b"z" * 100_000


def test_an_outage_cuts_connections_without_an_answer(live_emulator: LiveEmulator) -> None:
    """docs/emulator.md: ``outage_seconds`` cuts every matching request, over a socket,
    with no status at all (not a 500), and the service answers again after it."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx2.post(
        f"{live_emulator.url}/_emulator/faults",
        json={"outage_seconds": 1.5},
        headers=auth,
        timeout=10,
    )
    assert r.status_code == 200
    with pytest.raises(httpx2.TransportError):
        httpx2.get(f"{live_emulator.url}{ARC_HOME}", headers=auth, timeout=10)
    time.sleep(1.6)
    assert httpx2.get(f"{live_emulator.url}{ARC_HOME}", headers=auth, timeout=10).status_code == 200
