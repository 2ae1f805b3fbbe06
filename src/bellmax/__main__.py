"""`python -m bellmax ...`: the same as the `bellmax` command."""

import sys

from bellmax.cli import main

sys.exit(main())
