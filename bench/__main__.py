"""``python -m bench`` (``make bench``): every benchmark, then BENCHMARKS.md.

Each benchmark runs in its own subprocess, one after the other (they share the
test bed's readers and two cores), with its output kept in bench/results/NAME.log,
so a crash loses only that benchmark. The exit status is non-zero only when a
benchmark crashed; slow numbers are reported as missed goals, never as a failure.
Run as root inside ``testbed/isolated`` (``make bench`` does that).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# (name, command after the interpreter, timeout s); each writes bench/results/*.json
# (bench_hsm_pool prints only: its table goes into the report as text).
BENCHMARKS: list[tuple[str, list[str], float]] = [
    ("testbed", ["bench/bench_testbed.py"], 600),
    ("card", ["bench/bench_card.py"], 1200),
    ("hsm", ["bench/bench_hsm.py"], 900),
    ("hsm_pool", ["bench/bench_hsm_pool.py"], 600),
    ("hsm_fairness", ["-m", "bench.bench_hsm_fairness"], 600),
    ("piv", ["bench/bench_piv.py"], 1200),
    ("daemon", ["-m", "bench.bench_daemon"], 600),
    ("unary", ["-m", "bench.bench_unary"], 600),
    ("fanout", ["-m", "bench.bench_fanout"], 900),
]


def run_one(name: str, argv: list[str], timeout: float) -> dict[str, object]:
    """Run one benchmark; its log in results/NAME.log; what happened, for the report."""
    script = ROOT / argv[0]
    if argv[0].endswith(".py") and not script.exists():
        return {"name": name, "status": "absent", "seconds": 0.0}
    log = RESULTS / f"{name}.log"
    print(f"== {name}: {' '.join(argv)} (log {log.relative_to(ROOT)})", flush=True)
    start = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        try:
            proc = subprocess.run([sys.executable, *argv], cwd=ROOT, stdout=out,
                                  stderr=subprocess.STDOUT, env=env, timeout=timeout)  # fmt: skip
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f}s"
    elapsed = time.monotonic() - start
    print(f"   {status} in {elapsed:.0f}s", flush=True)
    return {"name": name, "status": status, "seconds": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild BENCHMARKS.md from the results already there")  # fmt: skip
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = report.machine()  # load average before we add any
    wanted = set(args.only.split(",")) if args.only else None
    runs = []
    runs_file = RESULTS / "runs.json"
    if args.report_only:  # keep what the last full run recorded about itself
        if runs_file.exists():
            saved = json.loads(runs_file.read_text())
            machine, runs = saved["machine"], saved["runs"]
    else:
        for name, argv, timeout in BENCHMARKS:
            if wanted is None or name in wanted:
                runs.append(run_one(name, argv, timeout))
        if wanted is not None and runs_file.exists():  # a partial rerun: merge by name
            saved = json.loads(runs_file.read_text())
            fresh = {str(r["name"]) for r in runs}
            runs = [r for r in saved["runs"] if r["name"] not in fresh] + runs
            machine = saved["machine"]
        runs_file.write_text(json.dumps({"machine": machine, "runs": runs}, indent=2))
    text, table = report.build(machine, runs)
    (ROOT / "BENCHMARKS.md").write_text(text)
    print("\n" + table)
    print(f"\nwritten: BENCHMARKS.md, {report.CHART.relative_to(ROOT)}")
    crashed = [r["name"] for r in runs if r["status"] not in ("ok", "absent")]
    if crashed:
        print(f"crashed: {', '.join(map(str, crashed))} (see bench/results/*.log)")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
