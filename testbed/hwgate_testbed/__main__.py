"""`python -m hwgate_testbed` runs the hwgate-testbed CLI."""

import sys

from hwgate_testbed.cli import main

sys.exit(main())
