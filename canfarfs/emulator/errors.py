"""HTTP faults the emulator answers, with the services' status codes and text bodies."""

from __future__ import annotations

from starlette.responses import PlainTextResponse


class Fault(Exception):
    """A refusal: ``status`` and the one-line text body the real service sends."""

    def __init__(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers or {}

    def response(self) -> PlainTextResponse:
        return PlainTextResponse(self.text + "\n", self.status, headers=self.headers)


def node_not_found(uri: str, target: bool = False) -> Fault:
    return Fault(404, f"NodeNotFound: {'Target ' if target else ''}{uri}")


def container_not_found(uri: str) -> Fault:
    return Fault(404, f"ContainerNotFound: {uri}")


def duplicate(uri: str) -> Fault:
    return Fault(409, f"DuplicateNode: {uri}")


def denied(what: str) -> Fault:
    return Fault(403, f"PermissionDenied: {what}")


def invalid(detail: str) -> Fault:
    return Fault(400, f"InvalidArgument: {detail}")


def not_authenticated(detail: str = "invalid or expired credentials") -> Fault:
    return Fault(401, f"NotAuthenticated: {detail}")
