"""VOSpace property URIs and which of them a user may set (vospace-api.md §4.3)."""

from __future__ import annotations

CORE = "ivo://ivoa.net/vospace/core#"
CADC = "ivo://cadc.nrc.ca/vospace/core#"

LENGTH = CORE + "length"
DATE = CORE + "date"
CONTENT_DATE = CORE + "content-date"
MD5 = CORE + "MD5"
CREATOR = CORE + "creator"
ISPUBLIC = CORE + "ispublic"
GROUPREAD = CORE + "groupread"
GROUPWRITE = CORE + "groupwrite"
QUOTA = CORE + "quota"
TYPE = CORE + "type"
ENCODING = CORE + "encoding"
AVAILABLE_SPACE = CORE + "availableSpace"
ISLOCKED = CADC + "islocked"
INHERIT = CADC + "inheritPermissions"
READABLE = CADC + "readable"
WRITABLE = CADC + "writable"
CREATOR_JWT = "ivo://opencadc.org/vospace/core#creatorJWT"
#: A date set with utimensat (touch -d, cp -p, rsync -a, tar -x): "<ns since the epoch>
#: <MD5 of the bytes it dates>". The services keep core#date themselves; this one holds
#: only while the bytes are the ones it was set on (docs/semantics.md, *Dates*).
MTIME = "ivo://canfar.net/canfarfs#mtime"
#: The mode a copy asked for (cp -a, rsync -a, tar -x) that VOSpace could not grant as a
#: whole: "<requested octal> <octal of the access it had then>". Shown while the
#: node's access is still that (docs/semantics.md, *Permissions*).
MODE = "ivo://canfar.net/canfarfs#mode"

GROUP_PREFIX = "ivo://cadc.nrc.ca/gms?"

#: Properties the server maintains; silently ignored on PUT/POST.
IMMUTABLE = frozenset(
    {AVAILABLE_SPACE, LENGTH, MD5, CONTENT_DATE, DATE, CREATOR, QUOTA, READABLE, WRITABLE}
)

_DUBLIN_CORE = [
    "title",
    "subject",
    "description",
    "publisher",
    "contributor",
    "format",
    "identifier",
    "source",
    "language",
    "relation",
    "coverage",
    "rights",
    "runid",
]

#: Every key accepted under the core namespace; any other core key is a 400.
CORE_KEYS = frozenset(
    {LENGTH, DATE, CONTENT_DATE, MD5, CREATOR, ISPUBLIC, GROUPREAD, GROUPWRITE, QUOTA, TYPE}
    | {ENCODING, AVAILABLE_SPACE}
    | {CORE + k for k in _DUBLIN_CORE}
)

_IVOA_NS = "ivo://ivoa.net/vospace/"


def is_unrecognised_core(uri: str) -> bool:
    """True for a key in the IVOA VOSpace namespace that is not in the core set."""
    return uri.startswith(_IVOA_NS) and uri not in CORE_KEYS


def groups_to_value(groups: list[str]) -> str:
    """Group names (or URIs) as the space-separated URI list VOSpace stores."""
    return " ".join(g if "://" in g else GROUP_PREFIX + g for g in groups)


def value_to_groups(value: str | None) -> list[str]:
    """The group names in a groupread/groupwrite value."""
    if not value:
        return []
    return [g.split("?", 1)[1] if "?" in g else g for g in value.split()]
