#!/usr/bin/env bash
# Set up a venv (if missing) with the project and its test extras, then run lint, types
# and the test suite. Exit code 5 from pytest (no tests collected) is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip >/dev/null
"$VENV/bin/pip" install -q -e '.[test]'
"$VENV/bin/ruff" check canfarfs tests benchmarks
"$VENV/bin/ruff" format --check canfarfs tests benchmarks
"$VENV/bin/mypy"
NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet --site-dir "$(mktemp -d)"
set +e
"$VENV/bin/pytest" -m "not slow and not real" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
