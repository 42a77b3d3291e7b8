"""``python -m cameo.train`` = the ``cameo-train`` command."""

import sys

from cameo.train.cli import main

sys.exit(main())
