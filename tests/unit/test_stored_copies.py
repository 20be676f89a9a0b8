"""The read cache's stored copies keep their byte total as they come and go (it was
summed afresh for every file a warm-up added: quadratic in the number of files)."""

from __future__ import annotations

import pytest

from canfarfs.fs.pins import StoredCopy
from canfarfs.fs.readcache import StoredCopies


def copy(name: str, length: int) -> StoredCopy:
    return StoredCopy(("arc", name), f"{name}.data", "md5", length, None)


def test_the_total_follows_every_change() -> None:
    stored = StoredCopies({("arc", "a"): copy("a", 10)})
    assert stored.total == 10
    stored[("arc", "b")] = copy("b", 5)
    stored[("arc", "a")] = copy("a", 7)  # replaced: the old length goes
    assert stored.total == 12
    assert stored.take(("arc", "b")) is not None
    assert stored.take(("arc", "b")) is None
    del stored[("arc", "a")]
    assert stored.total == 0
    assert len(stored) == 0
    with pytest.raises(KeyError):
        del stored[("arc", "a")]
