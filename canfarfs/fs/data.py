"""The type of bytes a read hands back."""

from __future__ import annotations

from typing import TypeAlias

#: Bytes, or a view of bytes held elsewhere (a read-ahead piece): reads are served
#: without copying, and FUSE takes any contiguous buffer.
Data: TypeAlias = bytes | memoryview
