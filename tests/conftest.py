"""What the layers share: the emulator in-process (core, emulator) and over a socket
(emulator, mount), and the check that keeps each layer to what it may need.

The layers, from the bottom: ``tests/unit`` (no emulator, no network), ``tests/core`` (the
FUSE-free core against the in-process emulator), ``tests/emulator`` (the emulator over a
socket, and CADC's clients against it), ``tests/mount`` (real mounts: /dev/fuse). Each
layer's own fixtures are in its ``conftest.py``; helpers are the ``tests/*_util.py``
modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from canfarfs.emulator.app import Emulator, build_emulator
from canfarfs.emulator.config import add_user, load_config
from tests.emulator_util import BOB_TOKEN, TOKEN, USER, LiveEmulator, start_live_emulator

#: The shared fixtures below and the layers allowed to use them; a test that asks for one
#: from a layer not listed (or is marked ``fuse`` outside tests/mount) is a collection
#: error, so ``pytest tests/unit tests/core`` stays free of sockets and /dev/fuse.
LAYER_FIXTURES = {
    "emulator": {"core", "emulator", "mount"},
    "live_emulator": {"emulator", "mount"},
    "live": {"emulator", "mount"},
    "tls_live": {"emulator", "mount"},
}
LAYERS = ("unit", "core", "emulator", "mount")


def _layer(item: pytest.Item) -> str | None:
    here = Path(__file__).parent
    if not item.path.is_relative_to(here):  # collected from elsewhere in the same run
        return None
    parts = item.path.relative_to(here).parts
    return parts[0] if len(parts) > 1 and parts[0] in LAYERS else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    wrong: list[str] = []
    for item in items:
        layer = _layer(item)
        if layer is None:  # a new file not yet placed in a layer
            continue
        if layer != "mount" and item.get_closest_marker("fuse") is not None:
            wrong.append(f"{item.nodeid}: marked fuse, belongs in tests/mount")
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        for name, allowed in LAYER_FIXTURES.items():
            used = defs.get(name)
            if used and used[-1].func.__module__ == __name__ and layer not in allowed:
                wrong.append(f"{item.nodeid}: uses {name}, which {layer} may not")
    if wrong:
        raise pytest.UsageError("tests in the wrong layer:\n  " + "\n  ".join(wrong))


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """The emulator app in-process, user alice (token TOKEN), with bob as a second user."""
    root = tmp_path / "emu"
    root.mkdir()
    add_user(root, "bob", BOB_TOKEN, ["survey-team"])
    config = load_config(root, user=USER, token=TOKEN, groups=frozenset({"survey-team"}))
    emu = build_emulator(config)
    yield emu
    emu.close()


@pytest.fixture
def live_emulator(tmp_path: Path) -> Iterator[LiveEmulator]:
    """``canfarfs emulator`` on a free loopback port, alice and bob as its users."""
    root = tmp_path / "live"
    root.mkdir()
    add_user(root, "bob", BOB_TOKEN, ["survey-team"])
    live = start_live_emulator(root)
    yield live
    live.stop()


@pytest.fixture
def live(live_emulator: LiveEmulator) -> LiveEmulator:
    """``live_emulator`` under a shorter name (tests and local fixtures use both)."""
    return live_emulator


@pytest.fixture(scope="module")
def tls_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEmulator]:
    """The emulator over HTTPS (``--tls``: its own CA, client certificates accepted)."""
    root = tmp_path_factory.mktemp("tls") / "emu"
    root.mkdir()
    live = start_live_emulator(root, extra=["--tls"])
    yield live
    live.stop()
    live.proc.communicate(timeout=10)  # close the pipes
