"""`python -m aonode.server.cli ...`, the same as the `aonode` console script."""

import sys

from aonode.server.cli import main

sys.exit(main())
