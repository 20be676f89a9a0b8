"""The sessions/ tree: Skaha sessions as files (docs/sessions.md)."""

from canfarfs.sessions.tree import SessionsTree

__all__ = ["SessionsTree"]
