"""The daemon's own cost per call, side by side with a bare grpc.aio server (issue #21).

One run, one test bed (pcscd + vpcd + two virtual PIV cards, SoftHSM2):

- bare: ``bench.bare_health``, a grpc.aio server with only the health servicer
  on a Unix socket, in its own process;
- hwgated on a Unix socket (admin role, audit file, policy, metrics: as deployed);
- direct pyscard on the other reader (the APDU's own cost).

All calls are serial from one client thread, by the same code (a sync grpc
channel per server; Sign through the client library). The measurements are
interleaved in ROUNDS rounds of CHUNK calls each, so a burst of load from the
other users of the machine hits every series alike. Goals (issue #21):

1. HsmService.Sign ECDSA P-256 median <= bare Health/Check + 0.35 ms;
2. Transmit 1 APDU <= bare + direct APDU + 0.2 ms; 16-APDU batch <= bare +
   16 direct APDUs + 0.3 ms;
3. hwgated Health/Check <= 1.1x bare;
7. 8 threads of one process calling ``key.sign()`` on ``client.hsm_key()`` (calls
   coalesced into SignStream batches) >= 3x the same threads with unary calls
   (``hsm_key(coalesce=False)``), alternating rounds of --thread-seconds.

Writes bench/results/unary.json. Run inside a private pcscd:
``testbed/isolated .venv/bin/python -m bench.bench_unary`` (``make bench BENCH=unary``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc

import hwgate
from bench.bench_card import SELECT_PIV, Direct, pct
from bench.procstat import cpu_seconds, process_tree
from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgate_testbed import orchestrate, slots
from hwgate_testbed.paths import SOFTHSM_MODULE, TOKEN_LABEL, TestbedPaths, vpcd_reader

R0, R1 = vpcd_reader(0), vpcd_reader(1)
RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent

# goal name -> (added over the baseline in ms, or None for a ratio limit)
SIGN_MARGIN_MS = 0.35
APDU_MARGIN_MS = 0.2
BATCH_MARGIN_MS = 0.3
HEALTH_RATIO = 1.1


def wait_serving(target: str, service: str = "", timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with grpc.insecure_channel(target) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=2
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{target} ({service or 'server'}) did not come up")
        time.sleep(0.1)


def hwgated_config(work: Path, paths: TestbedPaths, sock: Path, readers: str = R0) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    config = work / "hwgated.toml"
    config.write_text(
        '[daemon]\nlog_level = "warning"\ngrace_period = 1\n'
        f'[[listen]]\nunix = "{sock}"\nmode = "0600"\nrole = "admin"\n'
        f'[pcsc]\nreaders = ["{readers}"]\n'
        "[[hsm.token]]\n"
        f'name = "bench"\nmodule = "{SOFTHSM_MODULE}"\ntoken_label = "{TOKEN_LABEL}"\n'
        f'pin_file = "{paths.user_pin}"\nworkers = 2\nop_timeout = 30.0\n'
        f'env = {{ SOFTHSM2_CONF = "{paths.softhsm_conf}" }}\n'
        f'[audit]\nfile = "{work / "audit.jsonl"}"\n'
        '[policy.roles.admin]\nallow = ["*"]\n'
        '[[policy.keys]]\npattern = "*"\nroles = ["admin"]\n'
        '[[policy.readers]]\npattern = "*"\nroles = ["admin"]\n'
    )
    return config


def start_compare(
    tree: Path, work: Path, paths: TestbedPaths, sock: Path
) -> subprocess.Popen[bytes]:
    """hwgated from checkout *tree*, as configured for this bench but with no reader."""
    config = hwgated_config(work / "compare", paths, sock, readers="no reader: hwgated owns them")
    tree = tree.resolve()
    env = {**os.environ, "PYTHONPATH": f"{tree / 'daemon'}:{tree / 'clients'}"}
    log = (work / "compare.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "hwgated", "--config", str(config)],
                            stdout=log, stderr=log, env=env)  # fmt: skip


def interleaved(
    series: dict[str, Callable[[], object]],
    rounds: int,
    chunk: int,
    servers: dict[str, list[int]] | None = None,
) -> dict:
    """Per series: every call's ms, the per-round medians; rounds rotate the order.

    With *servers* (series -> the server's pids), also the CPU per call of the
    server processes and of this client process, summed over the series' rounds:
    on 2 cores, what a serial call costs the machine bounds what it can take.
    """
    names = list(series)
    samples: dict[str, list[float]] = {n: [] for n in names}
    per_round: dict[str, list[float]] = {n: [] for n in names}
    servers = servers or {}
    cpu = {n: [0.0, 0.0] for n in names}  # server, client seconds
    me = [os.getpid()]
    for fn in series.values():  # warm-up: connections, caches, the workers' first call
        for _ in range(30):
            fn()
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn = series[name]
            times = []
            pids = servers.get(name, [])
            server0, client0 = cpu_seconds(pids), cpu_seconds(me)
            for _ in range(chunk):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1000)
            cpu[name][0] += cpu_seconds(pids) - server0
            cpu[name][1] += cpu_seconds(me) - client0
            samples[name] += times
            per_round[name].append(statistics.median(times))
    return {
        n: {
            "median_ms": statistics.median(samples[n]),
            "p99_ms": pct(samples[n], 0.99),
            "n": len(samples[n]),
            "round_medians_ms": per_round[n],
            "server_cpu_us": 1e6 * cpu[n][0] / len(samples[n]) if n in servers else None,
            "client_cpu_us": 1e6 * cpu[n][1] / len(samples[n]),
        }
        for n in names
    }


def threads_rate(key: Any, threads: int, seconds: float) -> float:
    """Signatures/s of *threads* threads of this process calling ``key.sign()`` for
    *seconds* (cryptography's API: SHA-256 here, ECDSA in the HSM)."""
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads
    stop_at = [0.0]

    def run(t: int) -> None:
        data = f"thread {t}".encode()
        algorithm = ec.ECDSA(hashes.SHA256())
        barrier.wait()
        n = 0
        while time.perf_counter() < stop_at[0]:
            key.sign(data, algorithm)
            n += 1
        counts[t] = n

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    start = time.perf_counter()
    stop_at[0] = start + seconds
    barrier.wait()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def bench_threads(client: Any, rounds: int, seconds: float, threads: int = 8) -> dict:
    """Goal 7: the coalescing remote key vs the same threads making unary calls,
    alternating rounds; medians of the rounds."""
    keys = {"coalesced": client.hsm_key("signer-p256"),
            "unary": client.hsm_key("signer-p256", coalesce=False)}  # fmt: skip
    runs: dict[str, list[float]] = {name: [] for name in keys}
    for key in keys.values():
        threads_rate(key, threads, 0.3)  # warm-up
    for r in range(rounds):
        for name in list(keys) if r % 2 == 0 else list(keys)[::-1]:
            runs[name].append(threads_rate(keys[name], threads, seconds))
    mine, base = statistics.median(runs["coalesced"]), statistics.median(runs["unary"])
    ratio = mine / base
    return {
        "runs": runs,
        f"{threads} threads of one process, key.sign() ECDSA P-256": {
            "hwgate": f"{mine:.0f}/s [{min(runs['coalesced']):.0f}..{max(runs['coalesced']):.0f}]"
            " (coalesced)",
            "baseline": f"unary {base:.0f}/s [{min(runs['unary']):.0f}..{max(runs['unary']):.0f}]",
            "ratio": f"{ratio:.2f}x",
            "goal": ">= 3x unary",
            "verdict": "PASS" if ratio >= 3 else "MISS",
        },
    }


def goals(m: dict) -> list[dict]:
    """The three goals of issue #21 measured here, each with its limit from this run."""
    bare = m["bare_health"]["median_ms"]
    out = []

    def add(name: str, value: float, limit: float, text: str) -> None:
        out.append({"goal": name, "value_ms": value, "limit_ms": limit, "baseline": text,
                    "pass": value <= limit})  # fmt: skip

    add("Sign ECDSA P-256 unary <= bare + 0.35 ms", m["hwgate_sign"]["median_ms"],
        bare + SIGN_MARGIN_MS, f"bare {bare:.3f} ms")  # fmt: skip
    d1, d16 = m["direct_1"]["median_ms"], m["direct_16"]["median_ms"]
    add("Transmit 1 APDU <= bare + direct + 0.2 ms", m["hwgate_transmit_1"]["median_ms"],
        bare + d1 + APDU_MARGIN_MS, f"bare {bare:.3f} + direct {d1:.3f} ms")  # fmt: skip
    add("Transmit 16 APDUs <= bare + 16 direct + 0.3 ms", m["hwgate_transmit_16"]["median_ms"],
        bare + d16 + BATCH_MARGIN_MS, f"bare {bare:.3f} + 16 direct {d16:.3f} ms")  # fmt: skip
    add("Health/Check <= 1.1x bare", m["hwgate_health"]["median_ms"], bare * HEALTH_RATIO,
        f"bare {bare:.3f} ms")  # fmt: skip
    return out


def start_profile(out: Path, pid: int) -> subprocess.Popen[bytes]:
    """py-spy on the daemon (the venv's py-spy, from PyPI), collapsed stacks to *out*.

    ``--gil``: only the thread holding the GIL is sampled, so the shares are of the
    Python work that serializes the daemon, not of threads blocked in pcscd or epoll.
    """
    out.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    proc = subprocess.Popen([str(spy), "record", "--pid", str(pid), "--rate", "250", "--gil",
                             "--format", "raw", "--output", str(out / "hwgated.folded")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1.0)  # py-spy attaches before the measured calls start
    return proc


def stop_profile(proc: subprocess.Popen[bytes], out: Path) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    (out / "hwgated.top.txt").write_text(top_frames(out / "hwgated.folded"))


def top_frames(folded: Path, n: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        k = int(count)
        total += k
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].split("/")[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]  # fmt: skip
        own[frames[-1]] = own.get(frames[-1], 0) + k
        for f in set(frames):
            incl[f] = incl.get(f, 0) + k
    lines = [f"{total} samples", "", "self %  function"]
    for f, k in sorted(own.items(), key=lambda x: -x[1])[:n]:
        lines.append(f"{100 * k / total:5.1f}  {f}")
    lines += ["", "incl %  function"]
    for f, k in sorted(incl.items(), key=lambda x: -x[1])[: n * 2]:
        lines.append(f"{100 * k / total:5.1f}  {f}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=200, help="calls per series per round")
    parser.add_argument("--keep", action="store_true",
                        help="print the daemon's pid and wait for Enter before measuring "
                        "(attach py-spy)")  # fmt: skip
    parser.add_argument("--profile", type=Path,
                        help="py-spy the daemon while measuring: collapsed stacks in "
                        "DIR/hwgated.folded, top frames in DIR/hwgated.top.txt")  # fmt: skip
    parser.add_argument("--compare-tree", type=Path,
                        help="also hwgated from this checkout (e.g. the commit before a "
                        "change): Health/Check and Sign, same run; it gets no reader "
                        "(readers are exclusive)")  # fmt: skip
    parser.add_argument("--thread-rounds", type=int, default=4)
    parser.add_argument("--thread-seconds", type=float, default=2.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hwgate-bench-unary-"))
    paths = TestbedPaths.at(work / "testbed")
    orchestrate.up(paths, insert_card=False)
    sock, bare_sock = work / "hwgate.sock", work / "bare.sock"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bare = subprocess.Popen([sys.executable, "-m", "bench.bare_health", f"unix:{bare_sock}"],
                            env=env)  # fmt: skip
    log = (work / "hwgated.log").open("wb")
    config = hwgated_config(work, paths, sock)
    daemon = subprocess.Popen([sys.executable, "-m", "hwgated", "--config", str(config)],
                              stdout=log, stderr=log)  # fmt: skip
    compare = compare_sock = old = None
    if args.compare_tree:
        compare_sock = work / "compare.sock"
        compare = start_compare(args.compare_tree, work, paths, compare_sock)
    direct = None
    try:
        slots.insert(paths, 0, "alice")
        slots.insert(paths, 1, "bob")
        wait_serving(f"unix:{bare_sock}")
        wait_serving(f"unix:{sock}", "hwgate.v1.HsmService")
        wait_serving(f"unix:{sock}", "hwgate.v1.CardService")
        bare_channel = grpc.insecure_channel(f"unix:{bare_sock}")
        client = hwgate.connect(f"unix://{sock}")
        hw_channel = client.channel
        check = health_pb2.HealthCheckRequest()
        bare_check = health_pb2_grpc.HealthStub(bare_channel).Check
        hw_check = health_pb2_grpc.HealthStub(hw_channel).Check
        card = card_pb2_grpc.CardServiceStub(hw_channel)
        single = card_pb2.TransmitRequest(reader=R0, apdus=[SELECT_PIV])
        batch = card_pb2.TransmitRequest(reader=R0, apdus=[SELECT_PIV] * 16)
        digest = hashlib.sha256(b"bench").digest()
        direct = Direct(R1)
        d = direct
        series: dict[str, Callable[[], object]] = {
            "bare_health": lambda: bare_check(check, timeout=30),
            "hwgate_health": lambda: hw_check(check, timeout=30),
            "hwgate_sign": lambda: client.sign("signer-p256", "ecdsa-sha256", digest=digest),
            "direct_1": lambda: d.transmit(SELECT_PIV),
            "hwgate_transmit_1": lambda: card.Transmit(single, timeout=30),
            "direct_16": lambda: [d.transmit(SELECT_PIV) for _ in range(16)],
            "hwgate_transmit_16": lambda: card.Transmit(batch, timeout=30),
        }
        hw_tree = process_tree(daemon.pid)
        servers = {"bare_health": [bare.pid], "hwgate_health": hw_tree, "hwgate_sign": hw_tree,
                   "hwgate_transmit_1": hw_tree, "hwgate_transmit_16": hw_tree}  # fmt: skip
        if compare is not None:
            wait_serving(f"unix:{compare_sock}", "hwgate.v1.HsmService")
            old = hwgate.connect(f"unix://{compare_sock}")
            old_check = health_pb2_grpc.HealthStub(old.channel).Check
            series["compare_health"] = lambda: old_check(check, timeout=30)
            series["compare_sign"] = lambda: old.sign("signer-p256", "ecdsa-sha256", digest=digest)
            servers["compare_health"] = servers["compare_sign"] = process_tree(compare.pid)
        if args.keep:
            print(f"hwgated pid {daemon.pid}; bare pid {bare.pid}; Enter to measure", flush=True)
            sys.stdin.readline()
        spy = start_profile(args.profile, daemon.pid) if args.profile else None
        load_before = os.getloadavg()
        measured = interleaved(series, args.rounds, args.chunk, servers)
        if spy is not None:
            stop_profile(spy, args.profile)
        threads = bench_threads(client, args.thread_rounds, args.thread_seconds)
        report = {
            "conditions": {"rounds": args.rounds, "chunk": args.chunk,
                           "load_before": load_before, "load_after": os.getloadavg()},
            "series": measured,
            "goals": goals(measured),
            "batching": {k: v for k, v in threads.items() if k != "runs"},
            "batching_runs": threads["runs"],
        }  # fmt: skip
        client.close()
        if old is not None:
            old.close()
        bare_channel.close()
    finally:
        if direct is not None:
            direct.close()
        for proc in (daemon, bare, compare):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        orchestrate.down(paths)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "unary.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    return 0


def print_table(report: dict) -> None:
    print(f"\nserial calls, one client thread; {report['conditions']}")
    print(f"{'series':22} {'median ms':>10} {'p99 ms':>8} {'server CPU':>11} {'client CPU':>11}"
          "  per-round medians")  # fmt: skip
    for name, s in report["series"].items():
        rounds = " ".join(f"{x:.3f}" for x in s["round_medians_ms"])
        server = "" if s["server_cpu_us"] is None else f"{s['server_cpu_us']:.0f} us"
        print(f"{name:22} {s['median_ms']:10.3f} {s['p99_ms']:8.3f} {server:>11} "
              f"{s['client_cpu_us']:8.0f} us  {rounds}")  # fmt: skip
    for name, b in report["batching"].items():
        print(f"{name}: {b['hwgate']} vs {b['baseline']}: {b['ratio']} {b['goal']} {b['verdict']}")
    for g in report["goals"]:
        verdict = "PASS" if g["pass"] else "MISS"
        print(f"{g['goal']:50} {g['value_ms']:.3f} ms vs limit {g['limit_ms']:.3f} ms "
              f"({g['baseline']}) {verdict}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
