"""Every section of docs/semantics.md is checked by at least one test.

Tests say which section they check with ``@pytest.mark.semantics("Section")`` (on the
test, or in a module's ``pytestmark``); the section is the ``##`` heading without its
parenthesis (``Permissions`` for "Permissions (`stat`, `ls -l`, `chmod`)"). This reads
the headings from the page and the marks from the sources of tests/core and tests/mount
(not from a collection, so a mount test counts on a machine without /dev/fuse too), and
fails when a section has no test or a mark names no section.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "semantics.md"
LAYERS = ("core", "mount")


def sections() -> list[str]:
    """The page's ``##`` headings, as tests name them."""
    names = []
    for line in DOC.read_text().splitlines():
        m = re.match(r"## (.+)", line)
        if m:
            names.append(re.sub(r"\s*\(.*$", "", m.group(1)).strip())
    return names


def _marks(node: ast.AST) -> list[str]:
    """The sections named by ``semantics("...")`` / ``pytest.mark.semantics("...")``
    calls in ``node``."""
    found = []
    for call in ast.walk(node):
        if not isinstance(call, ast.Call) or not call.args:
            continue
        f = call.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        arg = call.args[0]
        if name == "semantics" and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found.append(arg.value)
    return found


def marked_tests() -> dict[str, set[str]]:
    """Section → the tests (``path::name``) marked with it, in tests/core and tests/mount."""
    tests: dict[str, set[str]] = {}
    for layer in LAYERS:
        for path in sorted((ROOT / "tests" / layer).glob("test_*.py")):
            tree = ast.parse(path.read_text(), str(path))
            funcs = [
                n
                for n in tree.body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                and n.name.startswith("test_")
            ]
            module_marks = [
                mark
                for n in tree.body
                if isinstance(n, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)
                for mark in _marks(n.value)
            ]
            for func in funcs:
                where = f"{path.relative_to(ROOT)}::{func.name}"
                own = [m for d in func.decorator_list for m in _marks(d)]
                for mark in module_marks + own:
                    tests.setdefault(mark, set()).add(where)
    return tests


def test_the_page_has_its_sections() -> None:
    """The headings were read (guards the parsing below against an empty answer)."""
    names = sections()
    assert len(names) >= 12, names
    assert "Errno table" in names
    assert "Permissions" in names


def test_every_section_has_a_test_in_core_or_mount() -> None:
    tests = marked_tests()
    missing = [name for name in sections() if not tests.get(name)]
    assert not missing, f"sections of docs/semantics.md with no marked test: {missing}"


def test_every_mark_names_a_section() -> None:
    names = set(sections())
    unknown = {mark: sorted(where) for mark, where in marked_tests().items() if mark not in names}
    assert not unknown, f"semantics marks that name no section of the page: {unknown}"


def test_the_marks_are_found_on_tests() -> None:
    """The scan sees decorators and pytestmark alike (a known test of each kind)."""
    tests = marked_tests()
    assert (
        "tests/core/test_semantics_core.py::test_rename_refusals_and_their_errnos"
        in tests["Renames"]
    )
    assert any(w.startswith("tests/mount/test_mount_dates.py::") for w in tests["Dates"])
