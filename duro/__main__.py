"""`python -m duro` runs the CLI."""

import sys

from duro.cli import main

sys.exit(main())
