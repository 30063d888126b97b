"""`python -m runtime.env` validates the environment; `--get NAME` prints one value."""

import sys

from runtime.env import main

raise SystemExit(main(sys.argv[1:]))
