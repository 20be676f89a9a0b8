"""Helpers the benchmark scripts share. They are run as scripts (``python
benchmarks/X.py``), so this directory is on ``sys.path``; they do not import canfarfs,
which may be run from another source tree (``--canfarfs-src``)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def parse_size(text: str) -> int:
    """``1G``, ``256M``, ``512K`` (binary multiples) or a plain byte count."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1G, 64M, 4096)")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(m.group(1)) * scale[m.group(2).upper()]


def human(n: int) -> str:
    """A byte count as the largest whole binary unit (``1 GiB``), else bytes."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def is_mounted(path: Path) -> bool:
    target = str(path.absolute())
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)
