"""Card event fan-out at 1000 subscribers, side by side with a bare grpc.aio fan-out (#21 goal 6).

One run, one test bed (pcscd + vpcd + the virtual PIV card). Servers, each in
its own process, one at a time on the same reader, interleaved in rounds so a
burst of load from the machine's other users hits them alike:

- hwgate: hwgated from this tree (admin role on a Unix socket, policy, metrics,
  card identification: as deployed);
- bare: ``bench.bare_fanout``, a grpc.aio server with one pre-serialized event
  per insertion put in every stream's queue (no identification, no layers);
- with ``--compare-tree DIR``: hwgated from another checkout (e.g. the commit
  before a change), for an A/B in the same run.

Subscribers: --subscribers WatchEvents streams spread over --procs client
processes (grpc.aio, one channel each), started before the insertions. For every
insertion, the added latency is each subscriber's receive time minus a raw
``SCardGetStatusChange`` watcher's in this process (pcscd's own detection is the
+0). Also measured: daemon RSS idle and with the subscribers (from /proc), and
the CPU seconds the server and the subscriber processes spent on the
insertions, per delivered event, which says what bounds the figure on 2 cores.

Goal (issue #21 goal 6): hwgate's added p99 <= 50 ms at 1000 subscribers, daemon
RSS <= +50 MB. Writes bench/results/fanout.json. Run inside a private pcscd:
``testbed/isolated .venv/bin/python -m bench.bench_fanout`` (``make bench BENCH=fanout``).
``--profile DIR`` records the servers with py-spy (raw collapsed stacks) during
the first round's insertions.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench.bench_card import summary
from bench.fanout_clients import RawWatcher, SubscriberProcesses, daemon_config
from bench.procstat import rss_mb
from hwgate_testbed import orchestrate, slots
from hwgate_testbed.paths import TestbedPaths, vpcd_reader

R0 = vpcd_reader(0)
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GOAL_P99_MS = 50.0
GOAL_RSS_MB = 50.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of *pid* (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _wait_ready(target: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    finally:
        channel.close()
    if proc.poll() is not None:
        raise RuntimeError(f"server exited with {proc.returncode}")


def start_server(
    variant: str, work: Path, compare_tree: Path | None
) -> tuple[subprocess.Popen[bytes], str]:
    sock = work / f"{variant}.sock"
    sock.unlink(missing_ok=True)
    target = f"unix:{sock}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if variant == "bare":
        argv = [sys.executable, "-m", "bench.bare_fanout", target, R0]
    else:
        argv = [sys.executable, "-m", "hwgated", "--config", str(daemon_config(work, sock, 4096))]
        if variant == "hwgate-compare":
            assert compare_tree is not None
            tree = compare_tree.resolve()
            env["PYTHONPATH"] = f"{tree / 'daemon'}:{tree / 'clients'}"
    proc = subprocess.Popen(argv, cwd=work, env=env)
    _wait_ready(target, proc)
    return proc, target


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _wait_count(value: Any, wanted: int, deadline: float) -> bool:
    while value.value < wanted and time.monotonic() < deadline:
        time.sleep(0.002)  # bench pacing, not test synchronization
    return value.value >= wanted


def one_round(
    variant: str,
    args: argparse.Namespace,
    paths: TestbedPaths,
    work: Path,
    profile: Path | None,
) -> dict[str, Any]:
    """Start *variant*, subscribe, insert --inserts times, measure, stop."""
    proc, target = start_server(variant, work, args.compare_tree)
    spy: subprocess.Popen[bytes] | None = None
    try:
        time.sleep(0.5)  # let start-up settle before the idle RSS
        idle = rss_mb(proc.pid)
        count = args.subscribers
        subscribers = SubscriberProcesses(target, count, args.procs)
        if not subscribers.wait_ready():
            raise RuntimeError("subscribers did not connect")
        shared = subscribers.shared
        loaded = rss_mb(proc.pid)
        watcher = RawWatcher()
        watcher.start()
        if profile is not None:
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    # native frames (grpc's C core) need the process paused per sample
                    "--native" if args.native else "--nonblocking",
                    "--format",
                    "raw",
                    "-r",
                    "200",
                    "-o",
                    str(profile / f"{variant}.txt"),
                    "--pid",
                    str(proc.pid),
                ],
                stdout=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # py-spy attaches
        shared["go"].set()
        cpu0, t0 = cpu_s(proc.pid), time.monotonic()
        lost = 0
        for k in range(args.inserts):
            slots.insert(paths, 0, "alice")
            if not _wait_count(shared["inserted"], count * (k + 1), time.monotonic() + 20):
                lost += 1
            slots.remove(paths, 0)
            _wait_count(shared["removed"], count * (k + 1), time.monotonic() + 20)
        server_cpu, wall = cpu_s(proc.pid) - cpu0, time.monotonic() - t0
        watcher.stop = True
        results = subscribers.finish()
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        stop_server(proc)
    seen = [row for r in results for row in r["seen"]]
    added = [
        (s[k] - raw) * 1000
        for k, raw in enumerate(watcher.inserts[: args.inserts])
        for s in seen
        if len(s) > k
    ]
    delivered = 2 * count * args.inserts  # an insertion and a removal per cycle
    return {
        "variant": variant,
        "added_ms": added,
        "idle_rss_mb": idle,
        "rss_mb": loaded,
        "server_cpu_s": server_cpu,
        "client_cpu_s": sum(r["cpu_s"] for r in results),
        "wall_s": wall,
        "delivered": delivered,
        "timeouts": lost,
        "raw_inserts": len(watcher.inserts),
    }


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One variant's rounds as one figure: every sample's added latency, median RSS."""
    added = [ms for r in rounds for ms in r["added_ms"]]
    delivered = sum(r["delivered"] for r in rounds)

    def med(key: str) -> float:
        values = sorted(r[key] for r in rounds)
        return values[len(values) // 2]

    return {
        "added_ms": summary(added) if added else None,
        "round_p99_ms": [
            summary(r["added_ms"])["p99_ms"] if r["added_ms"] else None for r in rounds
        ],
        "idle_rss_mb": med("idle_rss_mb"),
        "rss_mb": med("rss_mb"),
        "rss_growth_mb": med("rss_mb") - med("idle_rss_mb"),
        "server_cpu_us_per_event": 1e6 * sum(r["server_cpu_s"] for r in rounds) / delivered,
        "client_cpu_us_per_event": 1e6 * sum(r["client_cpu_s"] for r in rounds) / delivered,
        "timeouts": sum(r["timeouts"] for r in rounds),
    }


def goals(variants: dict[str, dict[str, Any]], subscribers: int) -> list[dict[str, Any]]:
    hw = variants["hwgate"]
    p99 = hw["added_ms"]["p99_ms"] if hw["added_ms"] else float("inf")
    bare = variants.get("bare", {}).get("added_ms")
    baseline = f"bare grpc.aio fan-out p99 +{bare['p99_ms']:.1f} ms" if bare else ""
    return [
        {
            "goal": f"added p99 <= {GOAL_P99_MS:.0f} ms",
            "subscribers": subscribers,
            "value": p99,
            "limit": GOAL_P99_MS,
            "baseline": baseline,
            "pass": p99 <= GOAL_P99_MS,
        },
        {
            "goal": f"RSS <= +{GOAL_RSS_MB:.0f} MB",
            "subscribers": subscribers,
            "value": hw["rss_growth_mb"],
            "limit": GOAL_RSS_MB,
            "baseline": f"idle {hw['idle_rss_mb']:.1f} MB",
            "pass": hw["rss_growth_mb"] <= GOAL_RSS_MB,
        },
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=4, help="subscriber processes")
    parser.add_argument("--inserts", type=int, default=5, help="insertions per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="hwgate,bare")
    parser.add_argument("--compare-tree", type=Path, help="also run hwgated from this checkout")
    parser.add_argument("--profile", type=Path, help="py-spy raw stacks of round 1 into DIR")
    parser.add_argument("--native", action="store_true", help="--profile with C frames")
    parser.add_argument("--out", type=Path, default=RESULTS / "fanout.json")
    args = parser.parse_args()
    names = args.variants.split(",") + (["hwgate-compare"] if args.compare_tree else [])
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hwgate-bench-fanout-"))
    paths = TestbedPaths.at(work / "testbed")
    orchestrate.up(paths, insert_card=False)
    # The bed's first card start is slower than the rest: keep it out of every round.
    slots.insert(paths, 0, "alice")
    slots.remove(paths, 0)
    rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    load = [os.getloadavg()]
    try:
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                row = one_round(name, args, paths, work, args.profile if r == 0 else None)
                rounds[name].append(row)
                p99 = summary(row["added_ms"])["p99_ms"] if row["added_ms"] else float("nan")
                print(
                    f"round {r + 1} {name:15s} p99 +{p99:.1f} ms, RSS {row['idle_rss_mb']:.1f}"
                    f" -> {row['rss_mb']:.1f} MB",
                    flush=True,
                )
    finally:
        orchestrate.down(paths)
    load.append(os.getloadavg())
    variants = {n: merge(rows) for n, rows in rounds.items()}
    report = {
        "subscribers": args.subscribers,
        "procs": args.procs,
        "inserts": args.inserts,
        "rounds": args.rounds,
        "load_average": load,
        "variants": variants,
        "goals": goals(variants, args.subscribers) if "hwgate" in variants else [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print_table(report)
    return 0


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\n{report['subscribers']} subscribers in {report['procs']} processes, "
        f"{report['rounds']} rounds x {report['inserts']} insertions"
    )
    print(
        f"{'variant':16s} {'median':>8s} {'p99':>8s} {'RSS +MB':>8s} "
        f"{'srv us/ev':>9s} {'cli us/ev':>9s}  per-round p99"
    )
    for name, v in report["variants"].items():
        a = v["added_ms"] or {"median_ms": float("nan"), "p99_ms": float("nan")}
        rounds = " ".join(f"{p:.0f}" if p is not None else "-" for p in v["round_p99_ms"])
        print(
            f"{name:16s} {a['median_ms']:8.1f} {a['p99_ms']:8.1f} {v['rss_growth_mb']:8.1f} "
            f"{v['server_cpu_us_per_event']:9.1f} {v['client_cpu_us_per_event']:9.1f}  {rounds}"
        )
    for g in report["goals"]:
        print(
            f"goal {g['goal']}: {g['value']:.1f} ({g['baseline']}) "
            f"{'PASS' if g['pass'] else 'MISS'}"
        )


if __name__ == "__main__":
    sys.exit(main())
