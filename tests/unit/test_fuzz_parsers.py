"""Fuzzing the two parsers that read text canfarfs does not control: session specs (what
users write into ``sessions/``) and VOSpace XML (what the servers answer). Every input
must either parse or be refused with the documented error — :class:`SpecError` (EINVAL)
for specs, :class:`XMLError` for XML. Any other exception is a crash (the mount would
turn it into EIO with a traceback instead of a clear message).

CI runs ``CI_EXAMPLES`` examples per parser. The long runs are marked slow and take their
count from ``CANFARFS_FUZZ_EXAMPLES`` (docs/reliability.md has the figures)::

    CANFARFS_FUZZ_EXAMPLES=100000 pytest -m slow tests/unit/test_fuzz_parsers.py -s
"""

from __future__ import annotations

import errno
import json
import os
import string
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from canfarfs import errors
from canfarfs.sessions.specs import FIELDS, MASK, MAX_SPEC, SpecError, read_spec
from canfarfs.vospace.xml import (
    MAX_NODE_DOC,
    XMLError,
    parse_job,
    parse_node,
    parse_transfer,
)
from tests.fuzz_util import (
    nested_listing,
    xml_cases,
)

CI_EXAMPLES = 300
LONG_EXAMPLES = int(os.environ.get("CANFARFS_FUZZ_EXAMPLES", "100000"))
CI = settings(
    max_examples=CI_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------------------
# Session specs

SECRET_PREFIX = "s3cr3t-"
KEYS = st.one_of(
    st.sampled_from([*FIELDS, "username", "secret", "registry", "Name", ""]), st.text(max_size=10)
)
#: Scalars written as YAML reads them: plain words YAML resolves to other types (dates,
#: octal, sexagesimal, .nan, yes/no), explicit tags, anchors, and numbers past Python's
#: 4300-digit conversion limit.
YAML_SCALARS = [
    "x",
    "skaha/terminal:1.1.1",
    "images.canfar.net/skaha/astroml:latest",
    "echo",
    "[hi]",
    "2001-12-14",
    "2001-13-01",
    "2001-02-30",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14t21:59:43.10-25:00",
    "12:30:45",
    "0o17",
    "0x1F",
    "0b101",
    "1_000",
    "1e999",
    ".nan",
    ".inf",
    "-.inf",
    "~",
    "null",
    "yes",
    "no",
    "on",
    "off",
    "True",
    "3.5",
    "-1",
    "0",
    "256",
    "257",
    "!!float abc",
    "!!int abc",
    "!!int 0x",
    "!!binary abc",
    "!!binary aGk=",
    "!!timestamp 2001-99-99",
    "!!timestamp x",
    "!!bool maybe",
    "!!bool ''",
    "!!int ''",
    "!!float _",
    "!!int 0:0",
    "!!str 5",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!!python/object/apply:os.system [id]",
    "!foo x",
    "&a x",
    "*a",
    "<<: {a: 1}",
    "|\n  block",
    ">\n  folded",
    '"quoted \\x00"',
    "'single ''q'''",
    '"\\ud800"',
    "***",
    '"***"',
    "\t",
    "9" * 4301,
    "-" + "9" * 4400,
    "1." + "0" * 5000,
]
YAML_PUNCT = [
    ": ",
    ":",
    "\n",
    "\n  ",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    ",",
    "? ",
    "#",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "\t",
    " ",
    "\r\n",
    "\ufeff",
    "\x85",
    "\u2028",
    "\x00",
    "\x1b",
    "é",
    "\U0001f600",
]

yamlish = st.lists(
    st.one_of(
        st.sampled_from(YAML_SCALARS), st.sampled_from(YAML_PUNCT), KEYS, st.text(max_size=8)
    ),
    max_size=40,
).map("".join)
jsonish = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "{",
                "}",
                "[",
                "]",
                ":",
                ",",
                '"',
                '"name"',
                '"image"',
                '"cores"',
                '"env"',
                '"registry"',
                "null",
                "true",
                "NaN",
                "-Infinity",
                "1e999",
                "9" * 4301,
                '"\\ud800"',
                '"\\u0000"',
                "\\",
            ]
        ),
        st.text(max_size=6),
    ),
    max_size=40,
).map("".join)
values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=20),
        st.sampled_from(YAML_SCALARS[:30]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)
names_ok = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
secrets = st.text(string.ascii_letters + string.digits, min_size=6, max_size=16).map(
    lambda t: SECRET_PREFIX + t
)


@st.composite
def plausible_specs(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """A spec mapping that is often valid, with one field sometimes replaced by junk;
    returns the mapping and the registry secret in it (if any)."""

    def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
        return draw(bad if draw(st.integers(0, 5)) == 0 else good)

    doc: dict[str, Any] = {
        "name": mostly(names_ok, st.sampled_from(["-x", "a_b", "x" * 64, "", "A.b"])),
        "image": mostly(
            st.sampled_from(["skaha/terminal:1.1.1", "images.canfar.net/skaha/x", "skaha/astroml"]),
            st.sampled_from(["a/b/c/d", "x", "", "skaha/:tag", "/x"]),
        ),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "kind": st.sampled_from(["headless"] * 4 + ["notebook", "desktop", "firefly", "bogus"]),
        "cores": st.integers(-2, 300),
        "ram": st.integers(-2, 600),
        "gpus": st.integers(0, 30),
        "cmd": st.sampled_from(["echo", "python", "echo", "two words", ""]),
        "args": st.one_of(
            st.lists(st.text(string.ascii_letters, min_size=1, max_size=8), max_size=3),
            st.lists(st.text(max_size=8), max_size=3),
            st.text(max_size=12),
        ),
        "env": st.dictionaries(
            st.text(max_size=6),
            st.one_of(st.text(max_size=8), st.integers(), st.floats(), st.booleans()),
            max_size=3,
        ),
        "replicas": st.integers(-1, 300),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=4)):
        doc[key] = draw(optional[key])
    secret = None
    if draw(st.booleans()):
        secret = draw(st.one_of(secrets, secrets, st.just(MASK)))
        value = draw(
            st.one_of(
                st.just(secret),
                st.just(secret),
                st.integers(),
                st.booleans(),
                st.binary(max_size=4),
            )
        )
        doc["registry"] = {"username": draw(st.sampled_from(["bob", "carol"])), "secret": value}
        secret = value if isinstance(value, str) else None
    if draw(st.integers(0, 5)) == 0:  # one field replaced by anything at all
        doc[draw(KEYS)] = draw(values)
    return doc, (secret if secret != MASK else None)


def dump(doc: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, default=str)  # (bytes: JSON has none)
    if fmt == "flow":
        return yaml.safe_dump(doc, default_flow_style=True, allow_unicode=True)
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


SPEC_NAMES = st.sampled_from(["s.yaml", "s.yml", "s.json"])


@st.composite
def spec_cases(draw: st.DrawFn) -> tuple[bytes, str, str | None]:
    """(file content, file name, the registry secret it holds or None)."""
    how = draw(
        st.sampled_from(
            ["bytes", "text", "yamlish", "jsonish", "structure", "plausible", "plausible"]
        )
    )
    name = draw(SPEC_NAMES)
    secret = None
    if how == "bytes":
        data = draw(st.binary(max_size=600))
    elif how == "text":
        data = draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    elif how == "yamlish":
        data = draw(yamlish).encode("utf-8", "surrogatepass")
    elif how == "jsonish":
        data = draw(jsonish).encode("utf-8", "surrogatepass")
    else:
        if how == "structure":
            doc: Any = draw(st.one_of(values, st.dictionaries(KEYS, values, max_size=8)))
        else:
            doc, secret = draw(plausible_specs())
        fmt = draw(st.sampled_from(["json", "block", "flow"]))
        if fmt == "json" and draw(st.integers(0, 4)) > 0:
            name = "s.json"  # mostly the suffix that matches
        data = dump(doc, fmt).encode("utf-8", "surrogatepass")
    event(f"spec input: {how}")
    return data, name, secret


def check_spec(case: tuple[bytes, str, str | None]) -> str:
    """Run the parser as the mount does; a crash fails the test, else the outcome."""
    data, name, secret = case
    known = {"bob": "s3cr3t-known"}
    refusal: SpecError | None = None
    try:
        spec, parsed = read_spec(data, name, known)
    except SpecError as exc:
        refusal = exc
    if refusal is not None:
        assert isinstance(refusal, errors.InvalidArgument)
        assert refusal.errno == errno.EINVAL
        assert refusal.message.strip(), "a refusal must say why"
        if secret is not None:
            assert secret not in refusal.message, "the error quotes the registry secret"
            if refusal.parsed is not None:
                assert secret not in refusal.parsed.masked, "the kept text shows the secret"
        outcome = "refused (EINVAL)"
    else:
        assert len(data) <= MAX_SPEC
        assert spec.name
        assert spec.image
        if secret is not None:
            assert secret not in parsed.masked, "the kept text shows the secret"
            assert known.get(spec.registry.username if spec.registry else "") == secret
        outcome = "launchable"
    event(f"spec outcome: {outcome}")
    return outcome


SPEC_REGRESSIONS = [  # each crashed (ValueError, …) before the fix in specs.py
    (b"name: x\nimage: y\ncmd: 2001-13-01\n", "s.yaml", None),
    (b"name: 2001-02-30\nimage: y\n", "s.yaml", None),
    (b"name: x\nimage: y\nenv: {A: 2001-12-14t21:59:43.10-25:00}\n", "s.yaml", None),
    (b"name: x\nimage: y\ncores: !!float abc\n", "s.yaml", None),
    (b"name: x\nimage: y\ncores: !!int abc\n", "s.yaml", None),
    (b"name: x\nimage: y\ncores: " + b"1" * 5000 + b"\n", "s.yaml", None),
    (b'{"name": "x", "image": "y", "cores": ' + b"1" * 5000 + b"}", "s.json", None),
    # found by the long run: KeyError, IndexError, AttributeError from PyYAML
    (b"name: x\nimage: y\ncmd: !!bool maybe\n", "s.yaml", None),
    (b"name: x\nimage: y\ncores: !!int ''\n", "s.yaml", None),
    (b"name: x\nimage: y\ncores: !!float _\n", "s.yaml", None),
    (b"name: x\nimage: y\ncmd: !!timestamp x\n", "s.yaml", None),
    (b"name: x\nimage: y\ncmd: !!int 0:0\n", "s.yaml", None),
]
#: Found by the long run: escaped lone surrogates crashed validation (UnicodeEncodeError
#: from pydantic when a message held one) or passed it and would break the launch request.
SURROGATES = [
    (b'name: "\\ud800"\nimage: skaha/x\n', "s.yaml"),
    (b'{"name": "\\ud800", "image": "skaha/x"}', "s.json"),
    (b'name: x\nimage: skaha/x\nenv: {"\\udfff": a}\n', "s.yaml"),
    (b'name: x\nimage: skaha/x\nenv: {"\\udfff": []}\n', "s.yaml"),
    (b'name: x\nimage: skaha/x\nregistry: {username: u, secret: "\\ud800"}\n', "s.yaml"),
    (b'name: x\nimage: skaha/x\n"\\ud800": 1\n', "s.yaml"),
]


@pytest.mark.parametrize("case", SPEC_REGRESSIONS, ids=lambda c: c[0][:40].decode())
def test_spec_values_yaml_cannot_convert_are_einval(case: tuple[bytes, str, None]) -> None:
    with pytest.raises(SpecError, match=r"invalid (YAML|JSON)"):
        read_spec(case[0], case[1], {})


@pytest.mark.parametrize("case", SURROGATES, ids=lambda c: c[0][:40].decode())
def test_escaped_surrogates_are_einval(case: tuple[bytes, str]) -> None:
    with pytest.raises(SpecError, match="surrogate"):
        read_spec(case[0], case[1], {})


@pytest.mark.parametrize("secret", ["!!binary aGk=", "123456", "2001-01-01", "true"])
def test_a_registry_secret_that_is_not_text_is_refused(secret: str) -> None:
    # !!binary passed validation (bytes → str) and the launched spec kept it in base64
    data = f"name: x\nimage: skaha/x\nregistry: {{username: u, secret: {secret}}}\n"
    with pytest.raises(SpecError, match=r"registry\.secret: must be text") as exc:
        read_spec(data.encode(), "s.yaml", {})
    assert exc.value.parsed is None  # nothing masked-looking is kept


@CI
@given(spec_cases())
@example((b"name: x\nimage: y\ncmd: 2001-13-01\n", "s.yaml", None))
@example(
    (
        b"name: ok\nimage: skaha/terminal:1.1.1\nregistry: {username: bob, secret: '***'}\n",
        "s.yaml",
        None,
    )
)
def test_spec_parser_fuzz(case: tuple[bytes, str, str | None]) -> None:
    check_spec(case)


# ---------------------------------------------------------------------------------------
# VOSpace XML (node, transfer and job documents)


def check_xml(data: bytes) -> str:
    """All three parsers, as the client and the emulator call them."""
    outcomes = []
    for parse in (
        parse_node,
        lambda d: parse_node(d, MAX_NODE_DOC),
        lambda d: parse_transfer(d, 1 << 20),
        parse_job,
    ):
        try:
            parse(data)
            outcomes.append("ok")
        except XMLError:
            outcomes.append("XMLError")
    outcome = "parsed by one" if "ok" in outcomes else "refused (XMLError)"
    event(f"xml outcome: {outcome}")
    return outcome


@CI
@given(xml_cases())
def test_xml_parser_fuzz(data: bytes) -> None:
    check_xml(data)


def test_deeply_nested_listing_is_refused_cleanly() -> None:
    """Found by this fuzz run: nesting ~500 deep raised RecursionError, not XMLError."""
    data = nested_listing(3000)  # 280 kB: the client parses listings without a size cap
    with pytest.raises(XMLError):
        parse_node(data)


# ---------------------------------------------------------------------------------------
# The long runs


def run_long(strategy: st.SearchStrategy[Any], check: Callable[[Any], str], label: str) -> None:
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=LONG_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case: Any) -> None:
        outcomes[check(case)] += 1

    start = time.monotonic()
    run()
    elapsed = time.monotonic() - start
    print(
        f"\n{label}: {sum(outcomes.values())} examples in {elapsed:.0f} s, 0 crashes; "
        f"outcomes {dict(outcomes)}"
    )


@pytest.mark.slow
def test_spec_parser_fuzz_long() -> None:
    run_long(spec_cases(), check_spec, "spec parser")


@pytest.mark.slow
def test_xml_parser_fuzz_long() -> None:
    run_long(xml_cases(), check_xml, "XML parser")
