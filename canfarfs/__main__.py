"""``python -m canfarfs``."""

import sys

from canfarfs.cli import main

sys.exit(main())
