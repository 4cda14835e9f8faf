"""``python -m hwgated``. Guarded: HSM workers are spawned, and spawn re-imports __main__."""

import sys

from hwgated.main import main

if __name__ == "__main__":
    sys.exit(main())
