"""What a VOSpace service's refusals mean, as the package's errors (vospace-api.md §7)."""

from __future__ import annotations

import httpx2

from canfarfs import errors


def error_from_response(r: httpx2.Response, what: str) -> errors.CanfarfsError:
    """The domain error for a failed VOSpace response (vospace-api.md §7.1)."""
    text = r.text.strip()[:500]
    message = f"{what}: {text or r.reason_phrase} (HTTP {r.status_code})"
    status = r.status_code
    if status == 404:
        return errors.NotFound(message, status=status)
    if status == 409:
        return errors.AlreadyExists(message, status=status)
    if status == 401:
        return errors.AuthExpired(message, status=status)
    if status == 403:
        if "locked" in text.lower():
            return errors.Locked(message, status=status)
        return errors.PermissionDenied(message, status=status)
    if status == 413:
        return errors.QuotaExceeded(message, status=status)
    if status == 412:
        return errors.IntegrityError(message, status=status)
    if status == 423:
        return errors.Locked(message, status=status)
    if status == 400 and "not empty" in text:
        return errors.NotEmpty(message, status=status)
    if status in (400, 405):
        return errors.InvalidArgument(message, status=status)
    return errors.Unavailable(message, status=status)


def error_from_job(text: str, what: str) -> errors.CanfarfsError:
    """The domain error for a UWS job's error summary (vospace-api.md §7.2)."""
    fault = text.split(":", 1)[0].strip()
    message = f"{what}: {text.strip()}"
    table: dict[str, type[errors.CanfarfsError]] = {
        "NodeNotFound": errors.NotFound,
        "ContainerNotFound": errors.NotFound,
        "DuplicateNode": errors.AlreadyExists,
        "PermissionDenied": errors.PermissionDenied,
        "NotAuthenticated": errors.AuthExpired,
        "NodeLocked": errors.Locked,
        "NodeBusy": errors.Unavailable,
        "QuotaExceeded": errors.QuotaExceeded,
        "InvalidArgument": errors.InvalidArgument,
        "InvalidURI": errors.InvalidArgument,
    }
    return table.get(fault, errors.CanfarfsError)(message)
