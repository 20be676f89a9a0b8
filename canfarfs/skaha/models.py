"""Skaha v1 data: what a user asks for (:class:`SessionSpec`) and what the server returns
(:class:`Session`). Pure pydantic, no I/O (skaha-api.md §3–§5).

``SessionSpec`` mirrors the ``canfar`` client's ``CreateRequest`` (same fields, bounds
and image normalisation) and adds the checks for what the real server would silently
mangle: ``env`` entries holding ``=`` or empty, arguments it would split on spaces, names
it cannot use as a host name. ``Session`` is tolerant: missing keys, ``null``, ``""`` and
the legacy ``"<none>"`` all read as ``None``; unknown keys are kept.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

Kind = Literal["desktop", "notebook", "carta", "headless", "firefly", "desktop-app", "contributed"]
KINDS: tuple[str, ...] = (
    "desktop",
    "notebook",
    "carta",
    "headless",
    "firefly",
    "desktop-app",
    "contributed",
)
#: Kinds ``POST session`` launches (desktop-apps attach to a desktop instead).
LAUNCH_KINDS: tuple[str, ...] = (
    "desktop",
    "notebook",
    "carta",
    "headless",
    "firefly",
    "contributed",
)
#: The canfar client's status vocabulary (current servers use Completed, legacy Succeeded).
STATUSES: tuple[str, ...] = (
    "Pending",
    "Running",
    "Completed",
    "Failed",
    "Terminating",
    "Succeeded",
    "Error",
)
#: A session name the server keeps intact and Kubernetes accepts as a host name.
NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
NAME_MAX = 63
DEFAULT_REGISTRY = "images.canfar.net"
#: What the sessions of a job array see: set per replica, so a spec cannot set them.
ARRAY_VARIABLES = ("REPLICA_ID", "REPLICA_COUNT", "INPUTS_FILE")


def check_input_glob(glob: str) -> None:
    """An ``inputs`` glob names paths under ``/arc/`` as sessions see them, without
    ``.``, ``..`` or empty components (ValueError otherwise)."""
    if not glob.startswith("/arc/") or glob == "/arc/":
        raise ValueError(
            f"{glob!r}: inputs are paths under /arc/ as sessions see them "
            "(e.g. /arc/home/me/raw/*.fits); vault and local paths are not reachable there"
        )
    parts = glob[len("/arc/") :].split("/")
    if any(p in ("", ".", "..") for p in parts) or "\0" in glob:
        raise ValueError(f"{glob!r}: write the path without '//', '.' or '..' components")


def normalize_image(value: str) -> str:
    """canfar's rule: 2 or 3 ``/`` parts; 2 parts get ``images.canfar.net/``; no tag →
    ``:latest`` (so ``skaha/astroml`` → ``images.canfar.net/skaha/astroml:latest``)."""
    parts = value.split("/")
    if not 2 <= len(parts) <= 3 or any(not p for p in parts):
        raise ValueError(
            "must look like [registry/]project/image[:tag], "
            "e.g. images.canfar.net/skaha/astroml:latest"
        )
    if any(c.isspace() for c in value):
        raise ValueError("must not contain spaces")
    if len(parts) == 2:
        value = f"{DEFAULT_REGISTRY}/{value}"
    if ":" not in value.rsplit("/", 1)[-1]:
        value += ":latest"
    return value


class RegistryAuth(BaseModel):
    """Credentials for a private image, sent as ``X-Skaha-Registry-Auth`` only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: StrictStr
    secret: SecretStr

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not value or ":" in value or any(c.isspace() for c in value):
            raise ValueError("must be non-empty, without ':' or spaces")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if not text or ":" in text or "\n" in text:
            # The server splits "username:secret" on ':' and needs exactly two parts.
            raise ValueError("must be non-empty and contain no ':' or newline")
        return value

    def header(self) -> str:
        """``base64(username:secret)``, the header value the server decodes."""
        raw = f"{self.username}:{self.secret.get_secret_value()}".encode()
        return base64.b64encode(raw).decode()


class SessionSpec(BaseModel):
    """A launch request as a user writes it (a spec file, or library arguments)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr
    image: StrictStr
    kind: Kind = "headless"
    cores: StrictInt | None = Field(None, ge=1, le=256)
    ram: StrictInt | None = Field(None, ge=1, le=512)
    gpus: StrictInt | None = Field(None, ge=1, le=28)
    cmd: StrictStr | None = None
    args: list[str] | str | None = None
    env: dict[str, str] | None = None
    replicas: StrictInt = Field(1, ge=1, le=256)
    registry: RegistryAuth | None = None
    #: Job arrays (canfarfs's own, docs/sessions.md): globs of paths as seen inside
    #: sessions (``/arc/…``), whose matches are shared out over the replicas.
    inputs: tuple[str, ...] | None = None
    split: Literal["chunk", "stripe"] | None = None

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return normalize_image(value)

    @field_validator("cmd")
    @classmethod
    def _cmd(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError("must be one program without spaces; put its arguments in args")
        return value

    @field_validator("args", mode="before")
    @classmethod
    def _args(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            if not value or value != value.strip(" ") or "  " in value:
                raise ValueError(
                    "as one string, args are split on single spaces: no "
                    "leading, trailing or double spaces (or give a list)"
                )
            return value
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise ValueError("must be a list of strings or one string")
        for i, arg in enumerate(value):
            if not arg or " " in arg:
                raise ValueError(
                    f"argument {i + 1} ({arg!r}) would be split or dropped by the "
                    "server, which splits args on spaces; give one word per "
                    "argument"
                )
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError("must be a mapping of NAME: value")
        out: dict[str, str] = {}
        for key, raw in value.items():
            if not isinstance(key, str) or not key or "=" in key or "\0" in key:
                raise ValueError(f"variable name {key!r} must be text without '='")
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise ValueError(f"{key}: the value must be text or a number")
            text = str(raw)
            if "=" in text:
                raise ValueError(
                    f"{key}: the value holds '=', which the server drops "
                    "silently (it keeps only NAME=VALUE with one '=')"
                )
            if not text or "\0" in text:
                raise ValueError(f"{key}: an empty value is dropped by the server")
            out[key] = text
        return out

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> Any:
        if value is None:
            return None
        globs = [value] if isinstance(value, str) else value
        if not isinstance(globs, list | tuple) or not globs:
            raise ValueError("must be one glob or a list of globs, e.g. /arc/home/me/raw/*.fits")
        for glob in globs:
            if not isinstance(glob, str):
                raise ValueError("each glob must be text, e.g. /arc/home/me/raw/*.fits")
            check_input_glob(glob)
        return tuple(globs)

    @model_validator(mode="after")
    def _rules(self) -> SessionSpec:
        suffix = len(f"-{self.replicas}") if self.replicas > 1 else 0
        if not NAME_RE.fullmatch(self.name) or len(self.name) + suffix > NAME_MAX:
            room = NAME_MAX - suffix
            raise ValueError(
                f"name {self.name!r}: 1–{room} letters, digits and '-', starting "
                "and ending with a letter or digit"
            )
        if (self.cmd or self.args or self.env) and self.kind != "headless":
            raise ValueError(f"cmd, args and env are only for headless sessions, not {self.kind}")
        if self.replicas > 1 and self.kind in ("desktop", "firefly"):
            raise ValueError(f"replicas: a {self.kind} session has only one replica")
        if self.inputs is not None:
            if self.kind != "headless":
                raise ValueError(f"inputs are only for headless sessions, not {self.kind}")
            taken = sorted(set(self.env or {}) & set(ARRAY_VARIABLES))
            if taken:
                raise ValueError(
                    f"env: {', '.join(taken)} are set by canfarfs for each replica of an "
                    "array with inputs; remove them from env"
                )
        elif self.split is not None:
            raise ValueError("split: only with inputs (the files to share out)")
        return self

    @property
    def args_text(self) -> str | None:
        """``args`` as the server receives it: one string, split there on spaces."""
        if self.args is None:
            return None
        return self.args if isinstance(self.args, str) else " ".join(self.args)

    def names(self) -> list[str]:
        """The replicas' names: unchanged for one, ``name-1 … name-N`` for several."""
        if self.replicas == 1:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(1, self.replicas + 1)]

    def create_params(
        self, extra_env: Mapping[int, Mapping[str, str]] | None = None
    ) -> list[list[tuple[str, str]]]:
        """One ``POST session`` parameter list per replica, as canfar builds them: fields
        in canfar's order, then user env, then ``REPLICA_ID``/``REPLICA_COUNT`` (which
        override user variables of the same name), then ``extra_env[replica]`` (a job
        array's ``INPUTS_FILE``)."""
        base: list[tuple[str, str]] = [("image", self.image)]
        for key, value in (
            ("cores", self.cores),
            ("ram", self.ram),
            ("type", self.kind),
            ("gpus", self.gpus),
            ("cmd", self.cmd),
            ("args", self.args_text),
        ):
            if value is not None:
                base.append((key, str(value)))
        out = []
        for i, name in enumerate(self.names(), start=1):
            env = dict(self.env or {}) | {"REPLICA_ID": str(i), "REPLICA_COUNT": str(self.replicas)}
            env |= (extra_env or {}).get(i, {})
            out.append([("name", name), *base, *(("env", f"{k}={v}") for k, v in env.items())])
        return out


def _text(value: Any) -> str | None:
    """A server string field: None for null, "", "<none>" and non-scalars."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value)
    return None if text in ("", "<none>") else text


def parse_time(value: Any) -> datetime | None:
    """Java ``OffsetDateTime``/``Instant`` text (seconds may be missing); None if not a time."""
    text = _text(value)
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class Session(BaseModel):
    """One session as the server lists it; ``raw`` is the JSON object as received."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    id: str = "Unknown"
    userid: str | None = None
    run_as_uid: str | None = Field(None, alias="runAsUID")
    run_as_gid: str | None = Field(None, alias="runAsGID")
    supplemental_groups: list[int] = Field(default_factory=list, alias="supplementalGroups")
    appid: str | None = None
    image: str | None = None
    kind: str | None = Field(None, alias="type")
    status: str | None = None
    name: str | None = None
    start_time: datetime | None = Field(None, alias="startTime")
    expiry_time: datetime | None = Field(None, alias="expiryTime")
    connect_url: str | None = Field(None, alias="connectURL")
    requested_ram: str | None = Field(None, alias="requestedRAM")
    requested_cpu_cores: str | None = Field(None, alias="requestedCPUCores")
    requested_gpu_cores: str | None = Field(None, alias="requestedGPUCores")
    ram_in_use: str | None = Field(None, alias="ramInUse")
    cpu_cores_in_use: str | None = Field(None, alias="cpuCoresInUse")
    gpu_ram_in_use: str | None = Field(None, alias="gpuRAMInUse")
    gpu_utilization: str | None = Field(None, alias="gpuUtilization")
    is_fixed_resources: bool | None = Field(None, alias="isFixedResources")

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _tolerate(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a session must be a JSON object")
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("startTime", "expiryTime"):
                out[key] = parse_time(value)
            elif key == "supplementalGroups":
                out[key] = (
                    [int(g) for g in value if _int_like(g)] if isinstance(value, list) else []
                )
            elif key == "isFixedResources":
                out[key] = (
                    value
                    if isinstance(value, bool)
                    else (str(value).lower() == "true" if _text(value) else None)
                )
            elif key in _STRING_KEYS:
                out[key] = _text(value)
            else:
                out[key] = value
        for key in ("id",):
            if out.get(key) is None:
                out.pop(key, None)
        return out

    @classmethod
    def from_json(cls, data: Any) -> Session:
        session = cls.model_validate(data)
        session._raw = dict(data) if isinstance(data, dict) else {}
        return session

    @property
    def raw(self) -> dict[str, Any]:
        return self._raw


def _int_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.strip().lstrip("+-").isdigit()


_STRING_KEYS = frozenset(
    {
        "id",
        "userid",
        "runAsUID",
        "runAsGID",
        "appid",
        "image",
        "type",
        "status",
        "name",
        "connectURL",
        "requestedRAM",
        "requestedCPUCores",
        "requestedGPUCores",
        "ramInUse",
        "cpuCoresInUse",
        "gpuRAMInUse",
        "gpuUtilization",
    }
)
