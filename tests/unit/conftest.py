"""tests/unit: parsers, attributes, command-line parsing, fuzzers, packaging. No emulator,
no network, no /dev/fuse; no fixtures beyond pytest's (tests/conftest.py refuses the
emulator fixtures here)."""
