import sys

from hwgated.main import main

sys.exit(main())
