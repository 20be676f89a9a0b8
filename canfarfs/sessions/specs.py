"""Spec files: which names launch, how their text becomes a :class:`SessionSpec`, and how
a registry secret is masked in the text kept in memory. Pure functions, no I/O.

Every refusal is a :class:`SpecError` (EINVAL) whose message is plain words a user can
act on, and never quotes the line it failed on (that line may hold a secret).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from canfarfs import errors
from canfarfs.skaha.models import SessionSpec

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
OUTCOME_SUFFIXES = (".ids", ".error")
#: Largest spec that launches.
MAX_SPEC = 64 * 1024
#: Written in place of a registry secret wherever the mount shows a spec.
MASK = "***"
FIELDS = tuple(SessionSpec.model_fields)


class SpecError(errors.InvalidArgument):
    """The spec cannot launch as written; ``parsed`` is set once the text was read."""

    parsed: Parsed | None = None


def is_spec_name(name: str) -> bool:
    """``*.yaml``, ``*.yml``, ``*.json``, not hidden: writing one launches."""
    return not name.startswith(".") and any(
        name.endswith(s) and len(name) > len(s) for s in SPEC_SUFFIXES
    )


def is_scratch_name(name: str) -> bool:
    """Editor side files kept in memory that never launch: hidden files (vim's
    ``.x.yaml.swp``, nano's ``.x.yaml.swp``, ``.goutputstream-…``), backups (``x.yaml~``),
    Emacs auto-saves (``#x.yaml#``) and vim's all-digit probe file (``4913``)."""
    return (
        name.startswith(".")
        or name.endswith("~")
        or name.isdigit()
        or (len(name) > 1 and name.startswith("#") and name.endswith("#"))
    )


def outcome_parts(name: str) -> tuple[str, str] | None:
    """``x.yaml.ids`` → ``("x.yaml", ".ids")``; None if ``name`` is not an outcome file."""
    for suffix in OUTCOME_SUFFIXES:
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if is_spec_name(base):
                return base, suffix
    return None


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases (no "billion laughs" expansion)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML's stub lacks it
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "anchors and aliases (*name) are not supported in specs",
                event.start_mark,
            )
        return super().compose_node(parent, index)


@dataclass(frozen=True)
class Parsed:
    """A spec file's text as kept in memory: the registry secret replaced by ``***``."""

    masked: str


def load(data: bytes, name: str) -> tuple[str, dict[str, Any]]:
    """Bytes → (text, mapping); refuses empty, huge, binary and malformed input."""
    if len(data) > MAX_SPEC:
        raise SpecError(f"the spec is {len(data)} bytes; a spec is at most {MAX_SPEC} bytes")
    if not data.strip():
        raise SpecError("the spec is empty; write at least name: and image:")
    if b"\0" in data:
        raise SpecError("the spec is binary data, not YAML or JSON text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"the spec is not UTF-8 text (bad byte at offset {exc.start})") from None
    document = _parse_json(text) if name.endswith(".json") else _parse_yaml(text)
    if not isinstance(document, dict):
        raise SpecError(
            f"the spec must be a mapping of fields (name: …, image: …), not {_kind_of(document)}"
        )
    if _has_surrogate(document):
        raise SpecError(
            "the spec holds an escaped surrogate (\\ud800 to \\udfff), which is "
            "not a character; write the character itself"
        )
    return text, document


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(document: Any) -> bool:
    """Whether a key or value holds a lone surrogate (YAML and JSON escapes make them):
    validation and the launch request cannot encode one (issue 7 fuzz run)."""
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list | tuple | set | frozenset):
            stack.extend(value)
    return False


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise SpecError("invalid JSON: nested too deeply") from None
    except ValueError:  # e.g. an integer beyond Python's 4300-digit conversion limit
        raise SpecError("invalid JSON: a number is too long to read") from None


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        raise SpecError(f"invalid YAML{where}: {what}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {type(exc).__name__}") from None
    except RecursionError:
        raise SpecError("invalid YAML: nested too deeply") from None
    except (ValueError, LookupError, AttributeError, TypeError, ArithmeticError):
        # PyYAML's constructors raise these, unwrapped, for scalars that look like or are
        # tagged as a type but are not one: 2001-13-01, a time zone beyond ±24 h, a number
        # past the 4300-digit conversion limit, `!!float abc`, `!!int ''`, `!!bool maybe`,
        # `!!timestamp x`. (The value may be a secret, so it is not quoted.)
        raise SpecError(
            "invalid YAML: a value is not the date, number or true/false it "
            "looks like or is tagged as (quote it to make it text)"
        ) from None


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    return {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true/false",
    }.get(type(value), type(value).__name__)


def registry_secret(document: dict[str, Any]) -> str | None:
    reg = document.get("registry")
    secret = reg.get("secret") if isinstance(reg, dict) else None
    return secret if isinstance(secret, str) else None


def validate(document: dict[str, Any]) -> SessionSpec:
    """The mapping → a spec, or a SpecError listing every problem, one a line."""
    try:
        return SessionSpec.model_validate(document)
    except ValidationError as exc:
        raise SpecError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """Readable lines from pydantic errors, without the offending input values."""
    lines = []
    for e in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = ".".join(str(p) for p in e["loc"])
        kind = e["type"]
        if kind == "extra_forbidden":
            allowed = ", ".join(FIELDS) if len(e["loc"]) == 1 else "username, secret"
            msg = f"unknown field (fields are: {allowed})"
        elif kind == "missing":
            msg = "required field missing"
        elif kind == "string_type":
            msg = (
                "must be text (quote it: YAML reads true, yes, no, numbers and dates "
                "as other types)"
            )
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines) or "invalid spec"


def mask_secret(text: str, name: str, secret: str) -> str:
    """``text`` with the registry secret's value written as ``***`` (located as the
    ``registry.secret`` scalar when possible, else every occurrence is masked)."""
    span = (
        _yaml_secret_span(text) if not name.endswith(".json") else _json_secret_span(text, secret)
    )
    if span is not None:
        start, end = span  # always quoted: a plain *** would read as a YAML alias
        return text[:start] + f'"{MASK}"' + text[end:]
    return text.replace(secret, MASK)


def _yaml_secret_span(text: str) -> tuple[int, int] | None:
    try:
        root = yaml.compose(text, Loader=_NoAliasLoader)
    except yaml.YAMLError:
        return None
    node = _child(root, "registry")
    node = _child(node, "secret") if node is not None else None
    if isinstance(node, yaml.ScalarNode) and node.start_mark and node.end_mark:
        return node.start_mark.index, node.end_mark.index
    return None


def _child(node: Any, key: str) -> Any:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def _json_secret_span(text: str, secret: str) -> tuple[int, int] | None:
    for m in re.finditer(r'"secret"\s*:\s*("(?:[^"\\]|\\.)*")', text):
        try:
            if json.loads(m.group(1)) == secret:
                return m.start(1), m.end(1)
        except ValueError:
            continue
    return None


def read_spec(data: bytes, name: str, known: dict[str, str]) -> tuple[SessionSpec, Parsed]:
    """Parse and validate a spec file. A ``***`` secret is the one remembered for that
    username in ``known`` (from an earlier spec), which is updated with new secrets.

    Raises SpecError; ``SpecError.parsed`` (if set) carries the masked text.
    """
    text, document = load(data, name)
    reg = document.get("registry")
    if (
        isinstance(reg, dict)
        and reg.get("secret") is not None
        and not isinstance(reg["secret"], str)
    ):  # (it could not be masked: !!binary, 1234)
        raise SpecError(
            "registry.secret: must be text (quote it: YAML reads numbers, "
            "dates, true/false and !!binary as other types)"
        )
    secret = registry_secret(document)
    parsed = Parsed(mask_secret(text, name, secret) if secret else text)
    try:
        if secret == MASK:
            reg = document["registry"]
            user = reg.get("username")
            if not isinstance(user, str) or user not in known:
                raise SpecError(
                    f"registry.secret is {MASK}, but this mount holds no secret "
                    f"for username {user!r}; write the secret itself"
                )
            document = {**document, "registry": {**reg, "secret": known[user]}}
        spec = validate(document)
    except SpecError as exc:
        exc.parsed = parsed
        raise
    if spec.registry is not None:
        known[spec.registry.username] = spec.registry.secret.get_secret_value()
    return spec, parsed
