"""What every command-line module shares: the usage error and size parsing (a leaf, so
``cli``, ``mountcmd``, ``mountopts`` and ``statuscmd`` import it and not each other)."""

from __future__ import annotations

import argparse

SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class UsageError(Exception):
    """A mistake the user can fix; printed as one line, exit status 2."""


def parse_size(text: str) -> int:
    """'10G', '512M', '1024' -> bytes."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in SIZE_UNITS and t[-1:] else ""
    number = t[: -len(unit)] if unit else t
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 10G or 512M)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"size must not be negative: {text!r}")
    return int(value * SIZE_UNITS[unit])
