"""Skaha v1: an async client and its models (usable without FUSE)."""

from canfarfs.skaha.client import Launch, SkahaClient, api_base, error_from_response
from canfarfs.skaha.models import (
    KINDS,
    LAUNCH_KINDS,
    STATUSES,
    RegistryAuth,
    Session,
    SessionSpec,
)

__all__ = [
    "KINDS",
    "LAUNCH_KINDS",
    "STATUSES",
    "Launch",
    "RegistryAuth",
    "Session",
    "SessionSpec",
    "SkahaClient",
    "api_base",
    "error_from_response",
]
