"""``python -m verifier``: see verifier.cli."""

import sys

from verifier.cli import main

if __name__ == "__main__":
    sys.exit(main())
