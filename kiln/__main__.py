"""`python -m kiln ...`: the `kiln` command line (kiln/cli)."""
import sys

from kiln.cli import main

sys.exit(main())
