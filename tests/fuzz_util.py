"""Hypothesis strategies shared by the parser and emulator fuzz tests."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import event
from hypothesis import strategies as st

from canfarfs.vospace import props
from canfarfs.vospace.xml import (
    UWS_NS,
    VOS_NS,
    XSI_NS,
)

HTTPS_PUT = "ivo://ivoa.net/vospace/core#httpsput"


HOMES = {"arc": "home/alice", "vault": "alice"}


SERVICES = sorted(HOMES)


def uri(service: str, name: str = "") -> str:
    base = f"vos://cadc.nrc.ca~{service}/{HOMES[service]}"
    return f"{base}/{name}" if name else base


def node_doc(node_uri: str, kind: str = "DataNode", inner: str = "") -> str:
    return (
        f'<vos:node xmlns:vos="{VOS_NS}" xmlns:xsi="{XSI_NS}" uri="{node_uri}" '
        f'xsi:type="vos:{kind}">{inner}</vos:node>'
    )


FRAGMENTS = [
    "<?xml version='1.0'?>",
    '<?xml version="1.0" encoding="ISO-8859-1"?>',
    "<!DOCTYPE x>",
    "<!ENTITY e 'v'>",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "&amp;",
    "&#0;",
    "&#xD800;",
    "&e;",
    "<vos:node",
    "</vos:node>",
    f' xmlns:vos="{VOS_NS}"',
    f' xmlns:xsi="{XSI_NS}"',
    ' xmlns="urn:x"',
    ' uri="vos://cadc.nrc.ca~arc/home/alice/',
    ' uri="vos://cadc.nrc.ca~vault/',
    ' uri="vos://cadc.nrc.ca!arc/',
    ' uri="vos://other~x/',
    ' xsi:type="vos:DataNode"',
    ' xsi:type="vos:ContainerNode"',
    ' xsi:type="vos:LinkNode"',
    ' xsi:type="vos:Bogus"',
    ' xsi:nil="true"',
    ' busy="maybe"',
    ">",
    "/>",
    '"',
    "'",
    "<vos:properties>",
    "</vos:properties>",
    "<vos:property",
    ' uri="ivo://ivoa.net/vospace/core#ispublic"',
    ' uri="ivo://ivoa.net/vospace/core#mtime"',
    ' uri="ivo://cadc.nrc.ca/vospace/core#islocked"',
    ' uri="ivo://ivoa.net/vospace/core#groupread"',
    "</vos:property>",
    "<vos:nodes>",
    "</vos:nodes>",
    "<vos:target>",
    "</vos:target>",
    "vos://cadc.nrc.ca~arc/home/alice/t",
    "file:///etc/passwd",
    "..",
    "%2F",
    "%00",
    "/",
    "true",
    "ivo://cadc.nrc.ca/gms?g",
    "<vos:transfer",
    "</vos:transfer>",
    "<vos:direction>pushToVoSpace</vos:direction>",
    "\x00",
    "\ufeff",
    "é",
    "\U0001f600",
]


xmlish = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=40).map(
    "".join
)


# Mostly characters XML can carry (so documents parse and reach the service logic),
# sometimes anything at all.
xml_chars = st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from("\t\n")


names = st.one_of(
    st.text(xml_chars, min_size=1, max_size=40),
    st.text(xml_chars, min_size=1, max_size=40),
    st.text(min_size=1, max_size=40),
)


prop_keys = st.one_of(
    st.sampled_from(
        [
            props.ISPUBLIC,
            props.GROUPREAD,
            props.GROUPWRITE,
            props.ISLOCKED,
            props.INHERIT,
            props.TYPE,
            props.LENGTH,
            props.MD5,
            props.QUOTA,
            props.CREATOR,
            props.CORE + "mtime",
        ]
    ),
    st.text(xml_chars, min_size=1, max_size=30).map(lambda t: "ivo://x.org/p#" + t),
)


prop_values = st.one_of(
    st.none(),
    st.text(xml_chars, max_size=40),
    st.text(max_size=10),
    st.sampled_from(["true", "false", ""]),
)


@st.composite
def node_documents(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(service, url-encoded name, body): mostly plausible, often subtly wrong."""
    service = draw(st.sampled_from(SERVICES))
    name = draw(st.one_of(names, st.just("canary.bin")))
    kind = draw(
        st.sampled_from(
            ["DataNode", "DataNode", "ContainerNode", "LinkNode", "UnstructuredDataNode", "Bogus"]
        )
    )
    same_uri = draw(st.sampled_from([True, True, True, False]))  # mostly consistent
    doc_name = quote(name, safe="") if same_uri else draw(names)
    properties = draw(st.dictionaries(prop_keys, prop_values, max_size=5))
    inner = (
        "<vos:properties>"
        + "".join(
            f'<vos:property uri="{escape_attr(k)}" xsi:nil="true"/>'
            if v is None
            else f'<vos:property uri="{escape_attr(k)}">{escape_text(v)}</vos:property>'
            for k, v in properties.items()
        )
        + "</vos:properties>"
    )
    if kind == "LinkNode":
        inner += f"<vos:target>{escape_text(draw(st.one_of(names, xmlish)))}</vos:target>"
    if kind == "ContainerNode":
        inner += "<vos:nodes/>"
    body = node_doc(f"{uri(service)}/{escape_attr(doc_name)}", kind, inner)
    return service, quote(name, safe=""), body.encode("utf-8", "surrogatepass")


def escape_attr(text: str) -> str:
    return escape_text(text).replace('"', "&quot;")


def escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


bodies = st.one_of(
    st.binary(max_size=2048),
    xmlish.map(lambda t: t.encode("utf-8", "surrogatepass")),
    node_documents().map(lambda t: t[2]),
)


PROTOCOLS = [
    "ivo://ivoa.net/vospace/core#httpsget",
    HTTPS_PUT,
    "ivo://ivoa.net/vospace/core#httpget",
    "ivo://ivoa.net/vospace/core#httpput",
    "ivo://ivoa.net/vospace/core#bogus",
]


SECURITY = [
    None,
    "",
    "ivo://ivoa.net/sso#token",
    "ivo://ivoa.net/sso#tls-with-certificate",
    "vos://cadc.nrc.ca~vospace/CADC/std/Auth#token-1.0",
    "urn:nope",
]


@st.composite
def transfer_documents(draw: st.DrawFn, moves: bool) -> tuple[str, bytes]:
    """(service, body): negotiations or moves with odd names, protocols and lengths."""
    service = draw(st.sampled_from(SERVICES))
    other = draw(st.sampled_from([service, service, service, *SERVICES]))
    known = st.sampled_from(["canary.bin", "keep", "keep/nested.txt", "new.bin"]).map(
        lambda n: uri(service, n)
    )
    target = draw(
        st.one_of(known, known, known, names.map(lambda n: uri(service, quote(n, safe=""))), names)
    )
    words = st.sampled_from(["pushToVoSpace", "pullFromVoSpace", "pushFromVoSpace", "bogus"])
    destinations = st.one_of(
        st.sampled_from(["keep", "moved", "keep/nested.txt", "", "canary.bin"]).map(
            lambda n: uri(other, n)
        ),
        # (no "%" in destinations: the emulator's result URIs do not survive a round trip
        # for such names, see test_emulator_schema, and the canaries must be moved back)
        names.filter(lambda n: "%" not in n).map(lambda n: uri(other, quote(n, safe=""))),
    )
    direction = draw(
        st.one_of(destinations, destinations, destinations, words, names)
        if moves
        else st.one_of(words, words, destinations, names)
    )
    protocols = draw(
        st.lists(st.tuples(st.sampled_from(PROTOCOLS), st.sampled_from(SECURITY)), max_size=3)
    )
    body = "".join(
        f'<vos:protocol uri="{p}">'
        + ("" if sm is None else f'<vos:securityMethod uri="{sm}"/>')
        + "</vos:protocol>"
        for p, sm in protocols
    )
    keep = draw(st.sampled_from(["false"] * 6 + ["true", "maybe", None]))
    if keep is not None:  # absent means true: a copy, which the services refuse
        body += f"<vos:keepBytes>{keep}</vos:keepBytes>"
    if draw(st.booleans()):
        length = draw(st.one_of(st.integers(-10, 10**30).map(str), st.text(xml_chars, max_size=8)))
        body += f'<vos:param uri="{props.LENGTH}">{escape_text(length)}</vos:param>'
    doc = (
        f'<vos:transfer xmlns:vos="{VOS_NS}" version="2.1"><vos:target>'
        f"{escape_text(target)}</vos:target><vos:direction>{escape_text(direction)}"
        f"</vos:direction>{body}</vos:transfer>"
    )
    return service, doc.encode("utf-8", "surrogatepass")


UWS_FRAGMENTS = [
    f'<uws:job xmlns:uws="{UWS_NS}">',
    "</uws:job>",
    "<uws:phase>",
    "</uws:phase>",
    "COMPLETED",
    "EXECUTING",
    "ERROR",
    "BOGUS",
    "<uws:jobId>",
    "</uws:jobId>",
    "<uws:errorSummary><uws:message>",
    "</uws:message></uws:errorSummary>",
    '<uws:results><uws:result id="r" xlink:href="h"/></uws:results>',
    ' xmlns:xlink="http://www.w3.org/1999/xlink"',
    "<uws:results>",
]


XML_EXTRA = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<?xml version="1.0" encoding="bogus"?>',
    '<?xml version="1.0" encoding="UTF-16"?>',
    '<?xml version="1.1"?>',
    '<!DOCTYPE x [<!ENTITY a "aaaa">]>',
    "&a;",
    "&amp;",
    "&#0;",
    "&#x1F600;",
    "<![CDATA[",
    "]]>",
    "<!-- c -->",
    "<?pi x?>",
    f' xmlns:xsi="{XSI_NS}"',
    ' xsi:type="vos:ContainerNode"',
    ' xsi:type="DataNode"',
    ' xsi:type=":x"',
    ' xsi:type="other:LinkNode"',
    ' xmlns:other="urn:o"',
    ' busy="true"',
    "<vos:node>",
    ' uri=""',
]


XML_FRAGMENTS = [*FRAGMENTS, *UWS_FRAGMENTS, *XML_EXTRA]


xml_soup = st.lists(
    st.one_of(st.sampled_from(XML_FRAGMENTS), st.text(max_size=10)), max_size=50
).map("".join)


@st.composite
def listings(draw: st.DrawFn) -> str:
    """A container listing with odd children (kinds, properties, nesting up to 4)."""

    def node(depth: int) -> str:
        kind = draw(
            st.sampled_from(
                ["ContainerNode", "DataNode", "LinkNode", "StructuredDataNode", "Bogus", ""]
            )
        )
        attrs = "" if draw(st.integers(0, 9)) == 0 else ' uri="vos://cadc.nrc.ca~arc/x"'
        if kind:
            attrs += f' xsi:type="vos:{kind}"'
        inner = draw(
            st.sampled_from(
                [
                    "",
                    "<vos:properties/>",
                    "<vos:target>t</vos:target>",
                    '<vos:properties><vos:property uri="u" xsi:nil="true"/></vos:properties>',
                    "<vos:properties><vos:property>v</vos:property></vos:properties>",
                ]
            )
        )
        if depth < 4 and draw(st.booleans()):
            inner += (
                "<vos:nodes>"
                + "".join(node(depth + 1) for _ in range(draw(st.integers(0, 3))))
                + "</vos:nodes>"
            )
        return f"<vos:node{attrs}>{inner}</vos:node>"

    doc = node(0)
    return doc.replace("<vos:node", f'<vos:node xmlns:vos="{VOS_NS}" xmlns:xsi="{XSI_NS}"', 1)


@st.composite
def xml_cases(draw: st.DrawFn) -> bytes:
    how = draw(st.sampled_from(["bodies", "soup", "listing", "transfer", "mutated"]))
    if how == "bodies":  # bytes, fragment soup and plausible node documents
        data = draw(bodies)
    elif how == "soup":
        data = draw(xml_soup).encode("utf-8", "surrogatepass")
    elif how == "listing":
        data = draw(listings()).encode()
    elif how == "transfer":
        data = draw(transfer_documents(moves=draw(st.booleans())))[1]
    else:  # a plausible document cut, spliced or with a byte flipped
        base = draw(
            st.one_of(
                listings().map(str.encode), transfer_documents(moves=False).map(lambda t: t[1])
            )
        )
        i = draw(st.integers(0, len(base)))
        data = draw(
            st.sampled_from(
                [
                    base[:i],
                    base[:i] + draw(st.binary(max_size=8)) + base[i:],
                    base[:i] + base[i + 1 :],
                ]
            )
        )
    event(f"xml input: {how}")
    return data


def nested_listing(depth: int) -> bytes:
    open_ = '<vos:node uri="vos://a~arc/x" xsi:type="vos:ContainerNode"><vos:nodes>'
    close = "</vos:nodes></vos:node>"
    return (
        open_.replace("<vos:node", f'<vos:node xmlns:vos="{VOS_NS}" xmlns:xsi="{XSI_NS}"', 1)
        + open_ * depth
        + close * depth
        + close
    ).encode()
