"""The node-document parser built on expat events, checked against the ElementTree walk
it replaced (kept below as ``old_parse_node``): every generated document must give an
equal Node, or be refused with the same error class and message. Example tests pin each
refusal, and that every hardening handler is wired, not only the DTD one.

CI runs ``CI_EXAMPLES`` examples; the long run is marked slow::

    CANFARFS_FUZZ_EXAMPLES=20000 pytest -m slow tests/unit/test_xml_listing_parser.py
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import pytest
from defusedxml import DefusedXmlException
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from canfarfs.vospace import xml as vxml
from canfarfs.vospace.model import Node, NodeType
from canfarfs.vospace.xml import (
    MAX_NODE_DEPTH,
    VOS_NS,
    XSI_NS,
    UnknownNodeType,
    XMLError,
    parse_node,
)
from tests.fuzz_util import listings, nested_listing, xml_cases

CI_EXAMPLES = 200
LONG_EXAMPLES = int(os.environ.get("CANFARFS_FUZZ_EXAMPLES", "20000"))
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

# ---------------------------------------------------------------------------------------
# The previous implementation (defusedxml's pure-Python iterparse, then a tree walk)

_V = "{" + VOS_NS + "}"
_XSI_TYPE = "{" + XSI_NS + "}type"
_XSI_NIL = "{" + XSI_NS + "}nil"


def _old_parse(data: bytes) -> tuple[Element, dict[str, str]]:
    nsmap: dict[str, str] = {}
    root: Element | None = None
    try:
        for ev, item in SafeET.iterparse(
            io.BytesIO(data), events=("start-ns", "start"), forbid_dtd=True
        ):
            if ev == "start-ns":
                prefix, uri = item
                nsmap.setdefault(prefix, uri)
            elif root is None:
                root = item
    except (SafeET.ParseError, DefusedXmlException) as exc:
        raise XMLError(f"malformed XML: {exc}") from exc
    except (LookupError, ValueError) as exc:
        raise XMLError(f"unreadable XML: {exc}") from exc
    if root is None:
        raise XMLError("empty document")
    return root, nsmap


def _old_node_type(el: Element, nsmap: dict[str, str]) -> NodeType:
    qname = el.get(_XSI_TYPE)
    if not qname:
        raise UnknownNodeType("node has no xsi:type")
    prefix, _, local = qname.rpartition(":")
    if nsmap.get(prefix, VOS_NS if not prefix else "") != VOS_NS or local not in vxml._INPUT_TYPES:
        raise UnknownNodeType(f"unsupported node type: {qname}")
    return vxml._INPUT_TYPES[local]


def _old_node_from(el: Element, nsmap: dict[str, str], depth: int = 0) -> Node:
    if depth > MAX_NODE_DEPTH:
        raise XMLError(f"nodes nested more than {MAX_NODE_DEPTH} deep")
    if el.tag != _V + "node":
        raise XMLError(f"expected a vos:node element, found {el.tag}")
    uri = el.get("uri")
    if not uri:
        raise XMLError("node has no uri attribute")
    kind = _old_node_type(el, nsmap)
    properties: dict[str, str | None] = {}
    pel = el.find(_V + "properties")
    if pel is not None:
        for p in pel.findall(_V + "property"):
            key = p.get("uri")
            if not key:
                raise XMLError("property without uri")
            nil = (p.get(_XSI_NIL) or "").lower() == "true"
            properties[key] = None if nil else (p.text or "")
    target_el = el.find(_V + "target")
    target = (target_el.text or "").strip() if target_el is not None else None
    if kind is NodeType.LINK and not target:
        raise XMLError("LinkNode without target")
    nodes_el = el.find(_V + "nodes")
    children = None
    if nodes_el is not None:
        children = [_old_node_from(c, nsmap, depth + 1) for c in nodes_el.findall(_V + "node")]
    busy = (el.get("busy") or "false").lower() == "true"
    return Node(
        uri=uri, type=kind, properties=properties, busy=busy, target=target, children=children
    )


def old_parse_node(data: bytes, max_size: int | None = None) -> Node:
    if max_size is not None and len(data) > max_size:
        raise XMLError(f"document of {len(data)} bytes exceeds {max_size}")
    root, nsmap = _old_parse(data)
    return _old_node_from(root, nsmap)


# ---------------------------------------------------------------------------------------
# Documents

URIS = ["vos://cadc.nrc.ca~arc/home/alice/x", "vos://cadc.nrc.ca~vault/alice/é%20b"]
KINDS = ["ContainerNode", "DataNode", "LinkNode", "StructuredDataNode", "UnstructuredDataNode"]
TEXTS = [
    "",
    "v",
    "  padded \n",
    "a&amp;b&lt;",
    "<![CDATA[<x/> & ]]>",
    "&#x1F600;&#65;",
    "a<!-- c -->b",
    "x<?pi y?>z",
    "\r\n",
    "é",
    "1024",
]
#: Declarations on any element: harmless ones, and ones that change what elements or the
#: xsi:type prefixes mean (only in documents meant to go wrong).
DECLS = [
    ' xmlns:other="urn:other"',
    f' xmlns:v="{VOS_NS}"',
    f' xmlns:late="{VOS_NS}"',
    ' xmlns:late="urn:late"',
    f' xmlns:vos="{VOS_NS}"',
]
BAD_DECLS = [
    ' xmlns:vos="urn:not-vos"',
    ' xmlns="urn:x"',
    f' xmlns="{VOS_NS}"',
    ' xmlns=""',
    f' xmlns:x="{XSI_NS}"',
    ' xmlns:xsi="urn:not-xsi"',
    ' xmlns:ns0="urn:n"',
]
#: DOCTYPEs: each must be refused, as the old parser did (forbid_dtd).
DOCTYPES = [
    "<!DOCTYPE vos:node>",
    '<!DOCTYPE n [<!ENTITY a "aaaa">]>',
    '<!DOCTYPE n [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE n [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>',
    '<!DOCTYPE n SYSTEM "file:///etc/passwd">',
    '<!DOCTYPE n PUBLIC "-//x//y" "http://example.invalid/x.dtd">',
    '<!DOCTYPE n [<!NOTATION t SYSTEM "y"><!ENTITY e SYSTEM "x" NDATA t>]>',
    '<!DOCTYPE n [<!ENTITY l0 "lol"><!ENTITY l1 "&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;">'
    '<!ENTITY l2 "&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;"><!ENTITY l3 "&l2;&l2;&l2;&l2;&l2;">]>',
]
ENTITY_REFS = ["&a;", "&x;", "&l3;", "&e;", "&amp;"]
#: What a document gets wrong, if anything (None twice: most documents should parse).
FAULTS = [
    None,
    None,
    None,
    "node",
    "property",
    "decl",
    "root",
    "chain",
    "encoding",
    "doctype",
    "entity",
]


@st.composite
def node_documents(draw: st.DrawFn) -> bytes:
    """Node documents in every shape the parser has to agree on: any element prefix or a
    default namespace, declarations on children (re-binding, or binding an ``xsi:type``
    prefix only later), unknown elements anywhere, repeated properties/target/nodes
    blocks, nodes outside ``nodes``, nil properties, text around child elements, chains
    across the depth limit, odd encodings, and prologs with DTDs, entities and billion
    laughs. Most are valid; the rest have one kind of fault, here and there."""
    fault = draw(st.sampled_from(FAULTS))
    vos = draw(st.sampled_from(["vos", "vos", "v", "ns0", ""]))  # "" = default namespace
    xsi = draw(st.sampled_from(["xsi", "xsi", "x"]))

    def q(local: str) -> str:
        return f"{vos}:{local}" if vos else local

    def chance(n: int) -> bool:
        return draw(st.integers(0, n - 1)) == 0

    def faulty(what: str) -> bool:
        return fault == what and chance(4)

    def decl() -> str:
        if not chance(6):
            return ""
        return draw(st.sampled_from(BAD_DECLS if faulty("decl") else DECLS))

    def text() -> str:
        return draw(st.sampled_from(TEXTS)) + (
            draw(st.sampled_from(ENTITY_REFS)) if faulty("entity") else ""
        )

    def unknown(depth: int) -> str:
        tag = draw(st.sampled_from([q("accepts"), q("provides"), "other:x", q("weird"), "plain"]))
        ns = ' xmlns:other="urn:other"' if tag.startswith("other:") else decl()
        inner = ""
        if depth < 3 and chance(3):
            inner = text() + node(depth + 1)  # a node in here is nobody's child
        elif chance(2):
            inner = text()
        return f"<{tag}{ns}>{inner}</{tag}>"

    def prop() -> str:
        good = [
            ' uri="ivo://ivoa.net/vospace/core#length"',
            ' uri="ivo://x#a"',
            ' uri="ivo://x#a"',
            ' uri="u&amp;v"',
        ]
        bad = [' uri=""', "", f' {xsi}:uri="ivo://x#q"']
        attrs = draw(st.sampled_from(bad if faulty("property") else good))
        nil = draw(
            st.sampled_from(
                [
                    "",
                    "",
                    "",
                    ' xsi:nil="true"',
                    ' xsi:nil="TRUE"',
                    ' xsi:nil="false"',
                    ' xsi:nil="1"',
                    ' nil="true"',
                ]
            )
        )
        inner = text()
        if chance(5):
            inner += unknown(9) + text()  # only the text before it counts
        name = q("property")
        return f"<{name}{attrs}{nil.replace('xsi:', xsi + ':')}{decl()}>{inner}</{name}>"

    def properties(depth: int) -> str:
        body = ""
        for _ in range(draw(st.integers(0, 4))):
            what = draw(st.sampled_from(["prop", "prop", "prop", "unknown", "text"]))
            body += prop() if what == "prop" else unknown(depth) if what == "unknown" else text()
        return f"<{q('properties')}{decl()}>{body}</{q('properties')}>"

    def target() -> str:
        inner = text() + "vos://t/x" + (unknown(9) + text() if chance(5) else "")
        return f"<{q('target')}{decl()}>{inner}</{q('target')}>"

    def nodes(depth: int) -> str:
        body = ""
        for _ in range(draw(st.integers(0, 3))):
            what = draw(st.sampled_from(["node", "node", "node", "unknown", "text"]))
            body += (
                node(depth + 1)
                if what == "node"
                else unknown(depth)
                if what == "unknown"
                else text()
            )
        return f"<{q('nodes')}{decl()}>{body}</{q('nodes')}>"

    def node(depth: int) -> str:
        bad = faulty("node")
        uri = draw(st.sampled_from(["", None] if bad and chance(2) else URIS))
        attrs = f' uri="{uri}"' if uri is not None else ""
        kind = draw(st.sampled_from([*KINDS, "Bogus", ""] if bad else KINDS))
        tprefix = draw(
            st.sampled_from(
                ["vos", "v", "late", "other", "", "undeclared", "a:b"]
                if bad
                else [vos, vos, vos, ""]
            )
        )
        if kind or chance(3):
            attrs += f' {xsi}:type="{tprefix + ":" if tprefix else ""}{kind}"'
        if chance(3):
            attrs += f' busy="{draw(st.sampled_from(["true", "True", "false", "yes", ""]))}"'
        blocks = draw(
            st.lists(
                st.sampled_from(
                    [
                        "properties",
                        "properties",
                        "target",
                        "nodes",
                        "nodes",
                        "unknown",
                        "text",
                        "stray",
                    ]
                ),
                max_size=5,
            )
        )
        if kind == "LinkNode" and not bad:
            blocks.insert(draw(st.integers(0, len(blocks))), "target")
        inner = ""
        for b in blocks:
            if b == "properties":
                inner += properties(depth)
            elif b == "target":
                inner += target()
            elif b == "nodes" and depth < 4:
                inner += nodes(depth)
            elif b == "unknown":
                inner += unknown(depth)
            elif b == "stray" and depth < 4:
                inner += node(depth + 1)  # a node straight in a node is not a child
            else:
                inner += text()
        return f"<{q('node')}{attrs}{decl() if depth else ''}>{inner}</{q('node')}>"

    body = node(0)
    if fault == "chain":  # containers around it, across the depth limit
        chain = draw(st.integers(MAX_NODE_DEPTH - 3, MAX_NODE_DEPTH + 1))
        open_ = (
            f'<{q("node")} uri="vos://a~arc/c" {xsi}:type="{vos + ":" if vos else ""}'
            f'ContainerNode"><{q("nodes")}>'
        )
        body = open_ * chain + body + f"</{q('nodes')}></{q('node')}>" * chain
    root_tag = q("node")
    if fault == "root":
        root_tag = draw(st.sampled_from([q("transfer"), "node", "other:node"]))
        inside = body[len(q("node")) + 1 : -len(q("node")) - 3]
        body = f"<{root_tag}{inside}</{root_tag}>"
    ns = f' xmlns:{vos}="{VOS_NS}"' if vos else f' xmlns="{VOS_NS}"'
    if root_tag == "node" and not vos and fault == "root":
        ns = ""  # a root in no namespace
    ns += f' xmlns:{xsi}="{XSI_NS}"'
    if "other:" in body:
        ns += ' xmlns:other="urn:other"'
    body = body.replace(f"<{root_tag}", f"<{root_tag}{ns}", 1)

    encoding = draw(
        st.sampled_from(["utf-8", "utf-8", "utf-8", "UTF-16", "UTF-16LE", "ISO-8859-1"])
    )
    if fault == "encoding":
        encoding = draw(st.sampled_from(["bogus", "shift_jis", "utf-16-le", "ascii"]))
    prolog = draw(st.sampled_from(["", '<?xml version="1.0"?>', "<!-- c -->\n", "<?pi x?>"]))
    if encoding != "utf-8" or chance(3):
        prolog = f'<?xml version="1.0" encoding="{encoding}"?>\n'
    if fault == "doctype":
        prolog += draw(st.sampled_from(DOCTYPES))
    doc = prolog + body + draw(st.sampled_from(["", "\n", "<!-- end -->", "<?pi?>"]))
    event(f"fault: {fault}; encoding {encoding}; prefix {vos or 'default'}")
    codec = {"bogus": "utf-8", "shift_jis": "utf-8", "UTF-16LE": "utf-16-le"}.get(
        encoding, encoding
    )
    return doc.encode(codec, "xmlcharrefreplace")


def outcome(parse: Callable[[bytes], Node], data: bytes) -> Node | tuple[type, str]:
    """The Node, or the refusal's class and message."""
    try:
        return parse(data)
    except XMLError as exc:
        return type(exc), str(exc)


def check_same(data: bytes) -> None:
    old, new = outcome(old_parse_node, data), outcome(parse_node, data)
    assert new == old
    event("parsed" if isinstance(new, Node) else f"refused: {new[0].__name__}")


CI = settings(max_examples=CI_EXAMPLES, deadline=None, database=None, suppress_health_check=HEALTH)
cases = st.one_of(node_documents(), node_documents(), listings().map(str.encode), xml_cases())


@CI
@given(cases)
@example(nested_listing(MAX_NODE_DEPTH - 1))
@example(nested_listing(MAX_NODE_DEPTH))
@example(nested_listing(MAX_NODE_DEPTH + 1))
def test_same_result_as_the_element_tree_walk(data: bytes) -> None:
    check_same(data)


@pytest.mark.slow
def test_same_result_long() -> None:
    @settings(
        max_examples=LONG_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(cases)
    def run(data: bytes) -> None:
        check_same(data)

    run()


# ---------------------------------------------------------------------------------------
# Examples

NS = f'xmlns:vos="{VOS_NS}" xmlns:xsi="{XSI_NS}"'
URI = "vos://cadc.nrc.ca~arc/home/alice/d"


def doc(
    inner: str = "", attrs: str = f'uri="{URI}" xsi:type="vos:ContainerNode"', prolog: str = ""
) -> bytes:
    return f"{prolog}<vos:node {NS} {attrs}>{inner}</vos:node>".encode()


def child(name: str, kind: str = "DataNode", inner: str = "") -> str:
    return f'<vos:node uri="{URI}/{name}" xsi:type="vos:{kind}">{inner}</vos:node>'


def props_(*items: str) -> str:
    return "<vos:properties>" + "".join(items) + "</vos:properties>"


def test_a_listing() -> None:
    inner = (
        props_(
            '<vos:property uri="p#a">1</vos:property>',
            '<vos:property uri="p#n" xsi:nil="TRUE">ignored</vos:property>',
        )
        + "<vos:accepts/><vos:nodes>"
        + child("f", "DataNode", props_('<vos:property uri="p#l">  7 </vos:property>'))
        + child("l", "LinkNode", "<vos:target> vos://x/y </vos:target>")
        + child("c", "ContainerNode", "<vos:nodes/>")
        + "</vos:nodes>"
    )
    node = parse_node(doc(inner, attrs=f'uri="{URI}" xsi:type="vos:ContainerNode" busy="TRUE"'))
    assert node.properties == {"p#a": "1", "p#n": None}
    assert node.busy
    assert node.children is not None
    assert [c.name for c in node.children] == ["f", "l", "c"]
    f, link, c = node.children
    assert f.properties == {"p#l": "  7 "}
    assert f.children is None
    assert link.target == "vos://x/y"
    assert c.children == []


def test_only_first_blocks_and_direct_children_count() -> None:
    inner = (
        props_(
            '<vos:property uri="a">x<b>inner</b>tail</vos:property>',
            '<vos:other><vos:property uri="deep">no</vos:property></vos:other>',
        )
        + props_('<vos:property uri="second">no</vos:property>')
        + "<vos:target>t1<i/>t2</vos:target><vos:target>second</vos:target>"
        + child("stray")  # a node straight in a node is not a child
        + "<vos:nodes><x>"
        + child("hidden")
        + "</x>"
        + child("kid")
        + "</vos:nodes>"
        + "<vos:nodes>"
        + child("second")
        + "</vos:nodes>"
    )
    node = parse_node(doc(inner))
    assert node.properties == {"a": "x"}
    assert node.target == "t1"
    assert node.children is not None
    assert [c.name for c in node.children] == ["kid"]


def test_any_prefix_default_namespace_and_utf16() -> None:
    text = (
        f'<?xml version="1.0" encoding="UTF-16"?><node xmlns="{VOS_NS}" '
        f'xmlns:i="{XSI_NS}" uri="{URI}" i:type="DataNode"><properties>'
        f'<property uri="p">é</property></properties></node>'
    )
    node = parse_node(text.encode("utf-16"))
    assert node.type is NodeType.DATA
    assert node.properties == {"p": "é"}


def test_xsi_type_prefix_resolves_through_the_first_declaration_anywhere() -> None:
    # The ElementTree walk resolved the xsi:type prefix through every declaration in the
    # document, the first one winning; kept as it was.
    late = doc(
        f"<vos:nodes>{child('c', inner=f'<x xmlns:late={VOS_NS!r}/>')}</vos:nodes>",
        attrs=f'uri="{URI}" xsi:type="late:ContainerNode"',
    )
    assert parse_node(late).type is NodeType.CONTAINER
    first_wins = doc(
        f'<vos:nodes xmlns:v="{VOS_NS}"><v:node xmlns:vos="urn:x" uri="{URI}/c" '
        'xsi:type="vos:DataNode"/></vos:nodes>'
    )
    children = parse_node(first_wins).children
    assert children is not None
    assert children[0].type is NodeType.DATA  # vos is urn:x there, but VOS_NS came first
    rebound = (
        f'<a:node xmlns:a="{VOS_NS}" xmlns:xsi="{XSI_NS}" xmlns:vos="urn:other" '
        f'uri="{URI}" xsi:type="vos:DataNode"/>'
    ).encode()
    with pytest.raises(UnknownNodeType, match="unsupported node type: vos:DataNode"):
        parse_node(rebound)
    for data in (late, first_wins, rebound):
        assert outcome(parse_node, data) == outcome(old_parse_node, data)


def test_deep_nesting_of_other_elements_is_fine() -> None:
    depth = 50_000
    node = parse_node(doc("<x>" * depth + "</x>" * depth))
    assert node.children is None


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (doc(attrs='xsi:type="vos:DataNode"'), XMLError, "node has no uri attribute"),
        (doc(attrs='uri="" xsi:type="vos:DataNode"'), XMLError, "node has no uri attribute"),
        (doc(attrs=f'uri="{URI}"'), UnknownNodeType, "node has no xsi:type"),
        (
            doc(attrs=f'uri="{URI}" xsi:type="vos:Bogus"'),
            UnknownNodeType,
            "unsupported node type: vos:Bogus",
        ),
        (
            doc(attrs=f'uri="{URI}" xsi:type="xsi:DataNode"'),
            UnknownNodeType,
            "unsupported node type: xsi:DataNode",
        ),
        (
            doc(props_('<vos:property uri="a">1</vos:property><vos:property>2</vos:property>')),
            XMLError,
            "property without uri",
        ),
        (doc(attrs=f'uri="{URI}" xsi:type="vos:LinkNode"'), XMLError, "LinkNode without target"),
        (
            doc("<vos:target> </vos:target>", attrs=f'uri="{URI}" xsi:type="vos:LinkNode"'),
            XMLError,
            "LinkNode without target",
        ),
        (
            doc("<vos:nodes>" + child("c", "Bogus") + "</vos:nodes>"),
            UnknownNodeType,
            "unsupported node type: vos:Bogus",
        ),
        (
            nested_listing(MAX_NODE_DEPTH + 1),
            XMLError,
            f"nodes nested more than {MAX_NODE_DEPTH} deep",
        ),
        (
            f'<vos:transfer xmlns:vos="{VOS_NS}"/>'.encode(),
            XMLError,
            f"expected a vos:node element, found {{{VOS_NS}}}transfer",
        ),
        (b"<node/>", XMLError, "expected a vos:node element, found node"),
        (b"", XMLError, "malformed XML: no element found: line 1, column 0"),
        (doc()[:-3], XMLError, "malformed XML: unclosed token"),
        (doc("&e;"), XMLError, "malformed XML: undefined entity"),
        (
            b'<?xml version="1.0" encoding="bogus"?><n/>',
            XMLError,
            "unreadable XML: unknown encoding: bogus",
        ),
        (
            b'<?xml version="1.0" encoding="shift_jis"?><n/>',
            XMLError,
            "unreadable XML: multi-byte encodings are not supported",
        ),
    ],
)
def test_refusals(data: bytes, error: type[XMLError], message: str) -> None:
    with pytest.raises(error) as exc:
        parse_node(data)
    assert type(exc.value) is error
    assert str(exc.value).startswith(message)
    assert outcome(old_parse_node, data) == (error, str(exc.value))


def test_checks_keep_the_tree_walk_order() -> None:
    # The root's own problems come before its children's, earlier children before later.
    data = doc(
        "<vos:nodes>"
        + child("a", "Bogus")
        + child("b", inner="<vos:properties><vos:property/></vos:properties>")
        + "</vos:nodes>",
        attrs=f'uri="{URI}" xsi:type="vos:LinkNode"',
    )
    with pytest.raises(XMLError, match="LinkNode without target"):
        parse_node(data)
    with pytest.raises(UnknownNodeType):
        parse_node(data.replace(b'"vos:LinkNode"', b'"vos:ContainerNode"'))


def test_size_is_checked_first() -> None:
    data = doc(prolog="<!DOCTYPE x>")
    with pytest.raises(XMLError, match=f"document of {len(data)} bytes exceeds 10"):
        parse_node(data, max_size=10)


# -- hardening: the DTD is refused outright, and each other handler is wired too --------

PROP_OPEN = props_('<vos:property uri="p">').removesuffix("</vos:properties>")
PROP_CLOSE = "</vos:property></vos:properties>"
HOSTILE = {
    "doctype": (doc(prolog="<!DOCTYPE vos:node>"), "DTDForbidden(name='vos:node'"),
    "internal entity": (
        doc(PROP_OPEN + "&a;" + PROP_CLOSE, prolog='<!DOCTYPE n [<!ENTITY a "x">]>'),
        "EntitiesForbidden(name='a'",
    ),
    "billion laughs": (
        doc(PROP_OPEN + "&l3;" + PROP_CLOSE, prolog=DOCTYPES[-1]),
        "EntitiesForbidden(name='l0'",
    ),
    "unparsed entity": (doc(prolog=DOCTYPES[-2]), "EntitiesForbidden(name='e'"),
    "external entity": (
        doc(PROP_OPEN + "&x;" + PROP_CLOSE, prolog=DOCTYPES[2]),
        "EntitiesForbidden(name='x', system_id='file:///etc/passwd'",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_dtd_is_refused(name: str) -> None:
    data, _ = HOSTILE[name]
    with pytest.raises(XMLError, match=r"^malformed XML: DTDForbidden\(name=") as exc:
        parse_node(data)
    assert outcome(old_parse_node, data) == (XMLError, str(exc.value))


@pytest.mark.parametrize("name", sorted(set(HOSTILE) - {"doctype"}))
def test_entities_are_refused_even_past_the_dtd(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vxml, "_forbid_dtd", lambda *args: None)
    data, message = HOSTILE[name]
    with pytest.raises(XMLError, match="^malformed XML: " + message.replace("(", r"\(")):
        parse_node(data)


def test_unparsed_entities_and_external_references_are_refused_past_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vxml, "_forbid_dtd", lambda *args: None)
    monkeypatch.setattr(vxml, "_forbid_entity", lambda *args: None)
    with pytest.raises(XMLError, match=r"^malformed XML: EntitiesForbidden\(name='e'"):
        parse_node(HOSTILE["unparsed entity"][0])
    with pytest.raises(
        XMLError,
        match=r"^malformed XML: ExternalReferenceForbidden\("
        r"system_id='file:///etc/passwd'",
    ):
        parse_node(HOSTILE["external entity"][0])
