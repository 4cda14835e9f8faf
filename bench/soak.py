"""Soak: 50 concurrent clients against one hwgated while cards come and go.

The workload and its checks live in tests/support/soak.py (the short soak test runs
the same code); this is the command line that runs it at full length and keeps the
result.

Run: ``testbed/isolated .venv/bin/python -m bench.soak [--seconds 60]`` (``make soak``).
Exit status 1 when a check fails. Writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.support.soak import print_result, run_soak

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--processes", type=int, default=5)
    args = parser.parse_args()
    result = run_soak(args.seconds, args.clients, args.processes)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2))
    print_result(result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
