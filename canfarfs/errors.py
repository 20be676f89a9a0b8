"""One error vocabulary for the clients and the file system, and one errno table.

Clients and the core raise :class:`CanfarfsError` subclasses that carry their meaning;
the failures that may pass when tried again share the :class:`Transient` base, which
retries and outage handling catch. The FUSE adapter turns any exception into an errno
with :func:`errno_for`. An unknown exception is EIO (and is logged with its traceback
by the adapter) — never a guessed errno.
"""

from __future__ import annotations

import errno


class CanfarfsError(Exception):
    """Base of every error canfarfs raises on purpose."""

    errno: int = errno.EIO

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class NotFound(CanfarfsError):
    errno = errno.ENOENT


class AlreadyExists(CanfarfsError):
    errno = errno.EEXIST


class PermissionDenied(CanfarfsError):
    errno = errno.EACCES


class NotPermitted(CanfarfsError):
    """An operation the service (or the file system's model) cannot express."""

    errno = errno.EPERM


class Locked(CanfarfsError):
    errno = errno.EPERM


class NotEmpty(CanfarfsError):
    errno = errno.ENOTEMPTY


class QuotaExceeded(CanfarfsError):
    errno = errno.EDQUOT


class InvalidArgument(CanfarfsError):
    errno = errno.EINVAL


class NameTooLong(CanfarfsError):
    errno = errno.ENAMETOOLONG


class NotADirectory(CanfarfsError):
    errno = errno.ENOTDIR


class IsADirectory(CanfarfsError):
    errno = errno.EISDIR


class CrossDevice(CanfarfsError):
    errno = errno.EXDEV


class ReadOnly(CanfarfsError):
    errno = errno.EROFS


class FileTooBig(CanfarfsError):
    """A size beyond what a file can have here (the staging file system's limit)."""

    errno = errno.EFBIG


class NoSpace(CanfarfsError):
    """The local staging or cache disk is full."""

    errno = errno.ENOSPC


class Stale(CanfarfsError):
    """An open file's bytes are gone: it was replaced or deleted before they were read."""

    errno = errno.ESTALE


class NoAttribute(CanfarfsError):
    """No extended attribute of that name (ENODATA, which is ENOATTR on Linux)."""

    errno = errno.ENODATA


class NotSupported(CanfarfsError):
    """An operation the tree does not support at all (extended attributes in sessions/,
    a namespace other than ``user.``): ENOTSUP, which tools take as "not here"."""

    errno = errno.ENOTSUP


class StaleInode(NotFound):
    """An inode number the table does not know (the kernel forgot it, or never had it)."""


class Busy(CanfarfsError):
    """Refused for now, for a reason that passes (a session just copied out by mv)."""

    errno = errno.EBUSY


class Transient(CanfarfsError):
    """A failure that may pass if the same request is made again (a slow or unreachable
    server, a connection cut): what retries and outage handling catch."""


class Timeout(Transient):
    """A bounded wait ran out (the server is slow or unreachable)."""

    errno = errno.ETIMEDOUT


class Unavailable(Transient):
    """The server could not be reached or kept failing (after retries)."""

    errno = errno.EIO


class Offline(CanfarfsError):
    """The service is unreachable (offline) and the answer is not in the cache: refused
    at once instead of waiting for the network (ENETDOWN)."""

    errno = errno.ENETDOWN


class IntegrityError(CanfarfsError):
    """The server's copy does not match what we sent (length or MD5)."""

    errno = errno.EIO


class ProtocolError(CanfarfsError):
    """The server answered something we cannot understand (bad XML, wrong length...)."""

    errno = errno.EIO


class AuthExpired(CanfarfsError):
    """Credentials are missing, expired or refused and could not be refreshed."""

    errno = errno.EACCES


def local_disk_error(exc: OSError | OverflowError, what: str) -> CanfarfsError:
    """A failure of the local staging or cache disk, with the errno that fits."""
    code = getattr(exc, "errno", None)
    if code == errno.EFBIG or isinstance(exc, OverflowError):
        return FileTooBig(f"{what}: larger than a file can be here")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"{what}: the local cache disk is full")
    return CanfarfsError(f"{what}: {exc}")


def errno_for(exc: BaseException) -> int:
    """The errno a user sees for ``exc``: EIO for anything not classified."""
    if isinstance(exc, CanfarfsError):
        return exc.errno
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return errno.EIO
