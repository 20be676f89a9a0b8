"""Skaha v1 data shapes and rules, as the real service has them (skaha-api.md §3–§7).

Pure functions only: parameter validation with the real 400 texts, the session JSON
(Gson drops nulls), Java time formats, kubectl-style event tables, the static
documents (context, images, capabilities). No I/O, no trio.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import secrets
import string
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from canfarfs.emulator.errors import Fault

log = logging.getLogger(__name__)

HEADLESS = "headless"
DESKTOP_APP = "desktop-app"
#: Kinds ``POST session`` accepts (desktop-app only through ``session/<id>/app``).
CREATE_KINDS = ("desktop", "notebook", "carta", HEADLESS, "firefly", "contributed")
ALL_KINDS = (*CREATE_KINDS, DESKTOP_APP)
INTERACTIVE_KINDS = frozenset(CREATE_KINDS) - {HEADLESS}

PENDING, RUNNING, COMPLETED, FAILED = "Pending", "Running", "Completed", "Failed"
ACTIVE = (PENDING, RUNNING)

HARBOR_HOSTS = ("images.canfar.net",)
HOME_BASE = "arc/home"
NAMESPACE = "skaha-workload"
NODE_NAME = "canfarfs-emulator"
#: Launch-template deadlines (activeDeadlineSeconds).
HEADLESS_DEADLINE = 14 * 24 * 3600
SESSION_EXPIRY = 4 * 24 * 3600
GIB = 1024**3

CORE_OPTIONS = tuple(range(1, 17))
RAM_OPTIONS = (
    1,
    2,
    4,
    6,
    8,
    10,
    12,
    14,
    16,
    20,
    24,
    26,
    28,
    30,
    32,
    36,
    40,
    44,
    48,
    56,
    64,
    80,
    92,
    112,
    128,
    140,
    170,
    192,
)
GPU_OPTIONS = tuple(range(1, 29))
FLEX_CORES = (1, 8)  # defaultRequest, defaultLimit
FLEX_RAM = (4, 32)

#: The emulator's public image cache: (id, types). Anything else is "private".
IMAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("images.canfar.net/skaha/terminal:1.1.1", (HEADLESS,)),
    ("images.canfar.net/skaha/astroml:latest", ("notebook", HEADLESS, DESKTOP_APP)),
    ("images.canfar.net/skaha/notebook-scipy:latest", ("notebook", HEADLESS)),
    ("images.canfar.net/skaha/desktop:latest", ("desktop",)),
    ("images.canfar.net/skaha/carta:5.0", ("carta",)),
    ("images.canfar.net/skaha/firefly:2025.1", ("firefly",)),
    ("images.canfar.net/skaha/marimo:latest", ("contributed",)),
    ("images.canfar.net/skaha/terminal:latest", (HEADLESS, DESKTOP_APP)),
)
PUBLIC_IMAGES = frozenset(i for i, _ in IMAGES)

REGISTRY_AUTH_TEXT = "Invalid input.  Must be in form of username:secret"
PRIVATE_IMAGE_TEXT = (
    "No authentication provided for unknown or private image.  Use x-skaha-registry-auth "
    "request header with base64Encode(username:secret)."
)
_NAME = re.compile(r"[A-Za-z0-9-]+")
_INT = re.compile(r"[+-]?\d+")
_DOUBLE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[fFdD]?")
_ID_FIRST, _ID_REST = string.ascii_lowercase, string.ascii_lowercase + string.digits
_WS = re.compile(r"\s+")


@dataclass
class SkahaSettings:
    """The emulator's Skaha knobs; each can be set with ``CANFARFS_SKAHA_<NAME>``."""

    #: Seconds an interactive session (or desktop-app) stays Pending before Running.
    pending_seconds: float = 1.0
    #: Seconds a headless session stays Pending before its process starts.
    headless_pending_seconds: float = 0.0
    #: Active interactive sessions a user may have (context ``maxInteractiveSessions``).
    max_sessions: int = 5
    #: ``skaha.sessionexpiry``: interactive deadline, and what renew extends to (seconds).
    session_expiry: int = SESSION_EXPIRY
    #: The headless launch template's activeDeadlineSeconds.
    headless_deadline: int = HEADLESS_DEADLINE
    #: Seconds a finished session stays listed (Job ttlSecondsAfterFinished).
    headless_ttl: float = 3600.0
    interactive_ttl: float = 86400.0
    #: Run headless commands as local processes (0: pretend, they complete at once).
    run: bool = True
    #: "auto": show ``<root>/arc`` at ``/arc`` through a private mount namespace where
    #: the OS allows it; "off": never (the process gets ``ARC_ROOT`` only).
    arc_mount: str = "auto"
    #: Seconds between SIGTERM and SIGKILL when a session's processes are stopped.
    kill_grace: float = 2.0
    #: Seconds between checks for expired and garbage-collectable sessions.
    tick: float = 0.5

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SkahaSettings:
        """Defaults overridden by ``CANFARFS_SKAHA_*`` variables (bad values are ignored)."""
        settings = cls()
        for name in cls.__dataclass_fields__:
            var = f"CANFARFS_SKAHA_{name.upper()}"
            raw = environ.get(var)
            if raw is None:
                continue
            current = getattr(settings, name)
            try:
                value: object
                if isinstance(current, bool):
                    value = raw.strip().lower() not in ("0", "false", "no", "off", "")
                else:
                    value = type(current)(raw.strip())
            except ValueError:
                log.warning("ignoring %s=%r: not a %s", var, raw, type(current).__name__)
                continue
            setattr(settings, name, value)
        return settings


def illegal_argument(message: str) -> Fault:
    """A 400 from ``IllegalArgumentException``: message, then the Java exception text."""
    return Fault(400, f"{message}java.lang.IllegalArgumentException: {message}")


def unsupported(message: str) -> Fault:
    """A 400 from ``UnsupportedOperationException``: the message only."""
    return Fault(400, message)


def new_session_id() -> str:
    """8 characters: first ``[a-z]``, the rest ``[a-z0-9]`` (RandomStringGenerator)."""
    return secrets.choice(_ID_FIRST) + "".join(secrets.choice(_ID_REST) for _ in range(7))


def new_app_id() -> str:
    return "".join(secrets.choice(_ID_REST) for _ in range(3))


def posix_id(name: str) -> int:
    """A stable POSIX id for a user or group name (CADC-style large numbers)."""
    return 100_000 + zlib.crc32(name.encode()) % 2_000_000_000


def java_split(text: str, sep: str) -> list[str]:
    """``String.split`` of a literal: trailing empty strings dropped, ``""`` → ``[""]``."""
    if text == "":
        return [""]
    parts = text.split(sep)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def parse_env(values: Sequence[str]) -> list[tuple[str, str]]:
    """``env`` parameters kept the way the server keeps them: exactly two parts on '='.

    Beyond the server's rule, pairs with an empty name or a NUL byte are dropped too
    (Kubernetes would refuse them; a local process cannot carry them).
    """
    out: list[tuple[str, str]] = []
    for value in values:
        parts = java_split(value, "=")
        if len(parts) == 2 and parts[0] and "\0" not in value:
            out.append((parts[0], parts[1]))
    return out


# -- time ---------------------------------------------------------------------------


def offset_datetime_text(epoch: float) -> str:
    """Java ``OffsetDateTime.toString()`` at second precision: ``:00`` seconds omitted."""
    t = datetime.fromtimestamp(int(epoch), UTC)
    return t.strftime("%Y-%m-%dT%H:%MZ" if t.second == 0 else "%Y-%m-%dT%H:%M:%SZ")


def instant_text(epoch: float) -> str:
    """Java ``Instant.toString()`` at second precision (seconds always present)."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- sessions -----------------------------------------------------------------------


@dataclass
class SessionRow:
    """One session (or desktop-app) as the emulator stores it."""

    key: str
    id: str
    userid: str
    kind: str
    name: str
    image: str
    status: str
    created: float
    deadline: int
    pod: str
    appid: str | None = None
    cores: float | None = None
    ram: int | None = None
    gpus: int = 0
    cmd: str | None = None
    args: list[str] | None = None
    env: list[tuple[str, str]] = field(default_factory=list)
    registry_user: str | None = None
    start_time: int | None = None
    finished: float | None = None
    pid: int | None = None
    pid_start: str | None = None
    exit_code: int | None = None

    @property
    def job_name(self) -> str:
        return f"skaha-{self.kind}-{self.userid}-{self.id}"[:63]

    @property
    def pod_name(self) -> str:
        return f"{self.job_name[:57]}-{self.pod}"

    @property
    def expiry(self) -> int | None:
        return None if self.start_time is None else self.start_time + self.deadline


def fixed_resources(kind: str, cores: float | None, ram: int | None) -> tuple[float, int] | None:
    """(cores, GiB) of a fixed-resource session, or None for a flexible one.

    Fixed means memory request == limit, decided by memory only; desktop and firefly
    use their templates (desktop is flexible, firefly fixed at 4Gi and 0.1 CPU).
    """
    if kind == "desktop":
        return None
    if kind == "firefly":
        return 0.1, 4
    if ram is None:
        return None
    return (cores if cores is not None else FLEX_CORES[0]), ram


def requested_cores(row: SessionRow) -> float:
    fixed = fixed_resources(row.kind, row.cores, row.ram)
    return fixed[0] if fixed else FLEX_CORES[0]


def requested_ram(row: SessionRow) -> int:
    fixed = fixed_resources(row.kind, row.cores, row.ram)
    return fixed[1] if fixed else FLEX_RAM[0]


def _cores_text(cores: float) -> str:
    return str(int(cores)) if float(cores).is_integer() else f"{cores:.3f}"


def connect_url(row: SessionRow, base: str) -> str:
    """The per-kind connect URL (§3); ``https://<host>/session`` becomes ``<base>/session-ui``.

    ``base`` is the Skaha base URL (``http://host:port/skaha``).
    """
    ui, sid = f"{base}/session-ui", row.id
    if row.kind == "desktop":
        return f"{ui}/desktop/{sid}/?password={sid}&path=session/desktop/{sid}/"
    if row.kind == "notebook":
        return f"{ui}/notebook/{sid}/lab/tree/{HOME_BASE}/{row.userid}?token={sid}"
    if row.kind == "carta":
        return f"{ui}/carta/{sid}/"
    if row.kind == "contributed":
        return f"{ui}/contrib/{sid}/"
    if row.kind == "firefly":
        return f"{ui}/firefly/{sid}/firefly/"
    return ""


def session_json(row: SessionRow, base: str, groups: Sequence[str]) -> dict[str, Any]:
    """The session object as Gson writes it: null fields are simply absent."""
    uid = str(posix_id(row.userid))
    out: dict[str, Any] = {
        "id": row.id,
        "userid": row.userid,
        "runAsUID": uid,
        "runAsGID": uid,
        "supplementalGroups": sorted(posix_id(g) for g in groups),
    }
    if row.appid is not None:
        out["appid"] = row.appid
    out |= {
        "image": row.image,
        "type": row.kind,
        "status": row.status,
        "name": row.name.lower()[:63],
    }
    if row.start_time is not None and row.expiry is not None:
        out["startTime"] = offset_datetime_text(row.start_time)
        out["expiryTime"] = instant_text(row.expiry)
    out["connectURL"] = connect_url(row, base)
    fixed = fixed_resources(row.kind, row.cores, row.ram)
    if fixed is not None:
        out["requestedRAM"] = f"{fixed[1] * GIB / 1e9:.2f}"
        out["requestedCPUCores"] = _cores_text(fixed[0])
    out["requestedGPUCores"] = str(row.gpus)
    if row.status == RUNNING:
        out["ramInUse"] = "0.05"
        out["cpuCoresInUse"] = "0.001"
    out["isFixedResources"] = fixed is not None
    return out


def public_json(row: SessionRow) -> dict[str, Any]:
    """The ``view=all`` element: owner, kind, status and (once started) startTime."""
    out: dict[str, Any] = {"userid": row.userid, "type": row.kind, "status": row.status}
    if row.start_time is not None:
        out["startTime"] = offset_datetime_text(row.start_time)
    return out


def gson(data: object) -> bytes:
    """Pretty JSON the way Gson prints it (2-space indent, no HTML escaping)."""
    return json.dumps(data, indent=2, ensure_ascii=False).encode()


def matches(row: SessionRow, kind: str | None, status: str | None) -> bool:
    """The list filters: case-insensitive; desktop-apps only when asked for by type."""
    if kind is None and row.kind == DESKTOP_APP:
        return False
    if kind is not None and kind.lower() != row.kind:
        return False
    return status is None or status.lower() == row.status.lower()


# -- events -------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str
    first: str
    last: str


def one_line(text: str) -> str:
    """Event messages keep single spaces only, so clients can split columns on '  '."""
    return _WS.sub(" ", text).strip() or "-"


def events_table(events: Sequence[Event]) -> str:
    """kubectl custom-columns output: each column padded to its widest cell + 3."""
    if not events:
        return "<none>\n"
    rows = [("TYPE", "REASON", "MESSAGE", "FIRST-TIME", "LAST-TIME")]
    rows += [(e.type, e.reason, e.message, e.first, e.last) for e in events]
    widths = [max(len(r[i]) for r in rows) + 3 for i in range(4)]
    lines = ["".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + r[4] for r in rows]
    return "\n".join(lines) + "\n"


# -- create parameters ----------------------------------------------------------------


@dataclass
class CreateSpec:
    """A validated ``POST session``."""

    name: str
    image: str
    kind: str
    cores: float | None
    ram: int | None
    gpus: int
    cmd: str | None
    args: list[str] | None
    env: list[tuple[str, str]]
    registry_user: str | None


class Params:
    """Servlet-style parameters: query first, then form body; first value wins."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = list(pairs)

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.pairs if k == name), None)

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


def parse_cores(raw: str | None) -> float | None:
    """``cores``: a Java double whose integer part is an offered option."""
    if raw is None:
        return None
    text = raw.strip(" \t\n\r\x0b\x0c")
    if not _DOUBLE.fullmatch(text):
        raise illegal_argument(f"Invalid value for 'cores': {raw}")
    value = float(text.rstrip("fFdD"))
    if not (1 <= value < 1e6) or int(value) not in CORE_OPTIONS:
        raise illegal_argument(f"Invalid value for 'cores': {raw}")
    return value


def parse_option(raw: str | None, name: str, options: Sequence[int]) -> int | None:
    """``ram``/``gpus``: a Java int that is one of the offered options."""
    if raw is None:
        return None
    if not _INT.fullmatch(raw) or len(raw) > 11 or int(raw) not in options:
        raise illegal_argument(f"Invalid value for '{name}': {raw}")
    return int(raw)


def validate_image(image: str | None, kind_raw: str | None) -> tuple[str, str]:
    """Steps 1–3: image present, from an allowed registry, valid type → (image, kind)."""
    if image is None:
        raise illegal_argument("Missing parameter 'image'")
    if image.split("/", 1)[0] not in HARBOR_HOSTS:
        hosts = ", ".join(HARBOR_HOSTS)
        raise illegal_argument(f"session image '{image}' must come from one of [{hosts}]")
    kind = HEADLESS if kind_raw is None else kind_raw.lower()
    if kind not in CREATE_KINDS:
        raise illegal_argument(f"Invalid session type: {kind_raw}")
    return image, kind


def validate_name(name: str | None) -> str:
    """Step 5, plus the hostname rule Kubernetes enforces (a 500 on the real server)."""
    if name is None:
        raise illegal_argument("Missing parameter 'name'")
    if not _NAME.fullmatch(name):
        raise illegal_argument("name can only contain alpha-numeric chars and '-'")
    if len(name) > 63 or name.startswith("-") or name.endswith("-"):
        raise Fault(
            400,
            f"session name '{name}' is not a valid host name: at most 63 "
            "characters, starting and ending with an alpha-numeric char",
        )
    return name


def registry_user(header: str | None) -> str:
    """Step 8 for a private image: the user in ``X-Skaha-Registry-Auth`` (or the 400)."""
    if header is None:
        raise illegal_argument(PRIVATE_IMAGE_TEXT)
    try:
        decoded = base64.b64decode(header.strip(), validate=True).decode()
    except (binascii.Error, ValueError):
        raise illegal_argument(REGISTRY_AUTH_TEXT) from None
    parts = java_split(decoded, ":")
    if len(parts) != 2:
        raise illegal_argument(REGISTRY_AUTH_TEXT)
    return parts[0]


def parse_create(
    params: Params,
    auth_header: str | None,
    active_interactive: int,
    max_interactive: int,
    user: str,
) -> CreateSpec:
    """Validate a create request in the real server's order (skaha-api.md §5)."""
    image, kind = validate_image(params.get("image"), params.get("type"))
    cores = parse_cores(params.get("cores"))
    ram = parse_option(params.get("ram"), "ram", RAM_OPTIONS)
    name = validate_name(params.get("name"))
    if kind in INTERACTIVE_KINDS and active_interactive >= max_interactive:
        raise illegal_argument(
            f"User {user} has reached the maximum of {max_interactive} active sessions."
        )
    gpus = parse_option(params.get("gpus"), "gpus", GPU_OPTIONS) or 0
    reg_user = None if image in PUBLIC_IMAGES else registry_user(auth_header)
    headless = kind == HEADLESS
    args = params.get("args")
    return CreateSpec(
        name=name,
        image=image,
        kind=kind,
        cores=cores,
        ram=ram,
        gpus=gpus,
        cmd=params.get("cmd") if headless else None,
        args=java_split(args, " ") if headless and args is not None else None,
        env=parse_env(params.getlist("env")) if headless else [],
        registry_user=reg_user,
    )


# -- static documents -------------------------------------------------------------------


def context_json(max_interactive: int) -> dict[str, Any]:
    """The Helm default ``k8s-resources.json`` (maxInteractiveSessions is a string)."""
    return {
        "cores": {
            "default": 2,
            "defaultRequest": FLEX_CORES[0],
            "defaultLimit": FLEX_CORES[1],
            "options": list(CORE_OPTIONS),
        },
        "memoryGB": {
            "default": 8,
            "defaultRequest": FLEX_RAM[0],
            "defaultLimit": FLEX_RAM[1],
            "options": list(RAM_OPTIONS),
        },
        "gpus": {"options": list(GPU_OPTIONS)},
        "maxInteractiveSessions": str(max_interactive),
    }


def images_json(kind: str | None) -> list[dict[str, Any]]:
    """``GET image[?type=]``; an unknown type is the real 400."""
    if kind is not None and kind.lower() not in ALL_KINDS:
        raise illegal_argument(f"unknown type: {kind}")
    want = None if kind is None else kind.lower()
    return [
        {"id": i, "types": list(t), "digest": "sha256:" + hashlib.sha256(i.encode()).hexdigest()}
        for i, t in IMAGES
        if want is None or want in t
    ]


def _gb(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") + "G"


def stats_json(rows: Sequence[SessionRow], cpus: int, mem_bytes: int) -> dict[str, Any]:
    """``view=stats``: running sessions' requests against this host's capacity."""
    running = [r for r in rows if r.status == RUNNING]
    cores = float(sum(requested_cores(r) for r in running))
    ram = sum(requested_ram(r) for r in running) * GIB / 1e9
    mem_gb = mem_bytes / 1e9
    return {
        "cores": {
            "requestedCPUCores": round(cores, 3),
            "cpuCoresAvailable": float(cpus),
            "maxCPUCores": {"cpuCores": float(cpus), "withRam": _gb(mem_gb)},
        },
        "ram": {
            "requestedRAM": _gb(ram),
            "ramAvailable": _gb(mem_gb),
            "maxRAM": {"ram": _gb(mem_gb), "withCPUCores": float(cpus)},
        },
    }


_SECURITY = (
    "ivo://ivoa.net/sso#cookie",
    "ivo://ivoa.net/sso#tls-with-certificate",
    "ivo://ivoa.net/sso#token",
)
_SESSION_CAPS = (
    ("vos://cadc.nrc.ca~vospace/CADC/std/Proc#sessions-1.0", "v0"),
    ("http://www.opencadc.org/std/platform#session-1", "v1/session"),
    ("http://www.opencadc.org/std/platform#context-1", "v1/context"),
    ("http://www.opencadc.org/std/platform#image-1", "v1/image"),
    ("http://www.opencadc.org/std/platform#repository-1", "v1/repository"),
)


def capabilities_xml(base: str) -> bytes:
    """The Skaha capabilities document (§7): one interface per security method."""
    url = escape(base)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">',
    ]
    for std, path in (
        ("ivo://ivoa.net/std/VOSI#capabilities", "capabilities"),
        ("ivo://ivoa.net/std/VOSI#availability", "availability"),
    ):
        out += [
            f'  <capability standardID="{std}">',
            '    <interface xsi:type="vs:ParamHTTP" role="std">',
            f'      <accessURL use="full">{url}/{path}</accessURL>',
            "    </interface>",
            "  </capability>",
        ]
    for std, path in _SESSION_CAPS:
        out.append(f'  <capability standardID="{std}">')
        for method in _SECURITY:
            out += [
                '    <interface xsi:type="vs:ParamHTTP" role="std" version="1.0">',
                f'      <accessURL use="base">{url}/{path}</accessURL>',
                f'      <securityMethod standardID="{method}"/>',
                "    </interface>",
            ]
        out.append("  </capability>")
    out.append("</vosi:capabilities>")
    return ("\n".join(out) + "\n").encode()


def env_mapping(pairs: Sequence[tuple[str, str]]) -> Mapping[str, str]:
    """Later pairs win, as with repeated ``env`` entries in a pod spec."""
    return dict(pairs)
