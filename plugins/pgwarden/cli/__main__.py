"""``python -m pgwarden.cli``: the same as the ``pgwarden`` console script."""

import sys

from pgwarden.cli import main

sys.exit(main())
