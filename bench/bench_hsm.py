"""Signatures per second through hwgate vs direct PKCS#11 vs p11-kit server, side by side.

One run, one SoftHSM2 token (the test bed's keys signer-p256 and signer-rsa,
provisioned in a temp dir), for ECDSA P-256 and RSA-2048:

- direct: python-pkcs11 in the client process; 1 and 2 processes (SoftHSM is
  initialized without locking by python-pkcs11, so a second thread would need
  its own module instance: a process);
- p11kit: ``p11-kit server`` + p11-kit-client.so, one server process per
  client connection (the server forks), 1 and 8 clients;
- hwgate-unary: hwgated (2 workers) and one blocking Sign at a time per
  client, 1 and 8 clients;
- hwgate-stream: one SignStream per client with up to WINDOW requests
  outstanding, 1 and 8 clients;
- hwgate-batch: the same stream, each request a batch of BATCH digests
  (SignStreamRequest.digests), BATCH_WINDOW batches outstanding.

Every client is its own process (its own GIL), set up first, then released
together by a barrier; each counts completions in the same window. Several
repetitions, medians. Prints a table and the goals; writes bench/results/hsm.json.

Run: testbed/isolated .venv/bin/python bench/bench_hsm.py [--seconds 2] [--reps 3]
The machine is shared and noisy: compare numbers from the same run only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.procstat import cpu_seconds, process_tree

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
P11KIT_CLIENT = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"
TOKEN_LABEL = "hwgate-testbed"
WINDOW = 256
BATCH = 64
BATCH_WINDOW = 8
KEYS = {
    "ecdsa-p256": ("signer-p256", "ECDSA_SHA256"),
    "rsa-2048": ("signer-rsa", "RSA_PKCS1_SHA256"),
}
RESULTS = Path(__file__).resolve().parent / "results" / "hsm.json"

Ctx = multiprocessing.context.SpawnContext


# -- environment -------------------------------------------------------------------


def provision(root: Path) -> dict[str, str]:
    """The test bed token in *root* (in a child: this process never loads SoftHSM)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result: dict[str, str] = pool.apply(_provision, (str(root),))
    return result


def _provision(root: str) -> dict[str, str]:
    from hwgate_testbed.paths import TestbedPaths
    from hwgate_testbed.softhsm import provision_token

    paths = TestbedPaths.at(root)
    provision_token(paths)
    return {"conf": str(paths.softhsm_conf), "pin_file": str(paths.user_pin)}


def start_hwgated(root: Path, token: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    sock = root / "bench.sock"
    config = root / "hwgated.toml"
    config.write_text(
        '[daemon]\nlog_level = "warning"\ngrace_period = 1\n'
        f'[[listen]]\nunix = "{sock}"\nmode = "0600"\nrole = "admin"\n'
        "[[hsm.token]]\n"
        f'name = "bench"\nmodule = "{MODULE}"\ntoken_label = "{TOKEN_LABEL}"\n'
        f'pin_file = "{token["pin_file"]}"\nworkers = 2\nop_timeout = 30.0\n'
        f'env = {{ SOFTHSM2_CONF = "{token["conf"]}" }}\n'
        f'[audit]\nfile = "{root / "audit.jsonl"}"\n'
        '[policy.roles.admin]\nallow = ["*"]\n'
        '[[policy.keys]]\npattern = "*"\nroles = ["admin"]\n'
    )
    log = (root / "hwgated.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hwgated", "--config", str(config)], stdout=log, stderr=log
    )
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    target = f"unix:{sock}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with grpc.insecure_channel(target) as channel:
                grpc.channel_ready_future(channel).result(timeout=5)
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="hwgate.v1.HsmService"), timeout=5
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return proc, target
        except grpc.FutureTimeoutError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"hwgated did not come up; see {root / 'hwgated.log'}")
        time.sleep(0.2)


def start_p11kit(root: Path, token: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    runtime = root / "xdg"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SOFTHSM2_CONF": token["conf"]}
    proc = subprocess.Popen(
        ["p11-kit", "server", "-f", "--provider", MODULE, "pkcs11:"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    address = line.split("=", 1)[1].split(";", 1)[0]
    return proc, address


# -- client processes ----------------------------------------------------------------


def _digests(algorithm: str, seed: int) -> list[bytes]:
    return [hashlib.sha256(f"{seed}-{i}".encode()).digest() for i in range(64)]


def _timed(barrier: Any, seconds: float, step: Callable[[], int]) -> tuple[int, float, float]:
    """Wait for every client, then run *step* (returns completions) for *seconds*:
    (completions, seconds taken, this process's CPU seconds meanwhile, all threads)."""
    barrier.wait()
    start, cpu = time.perf_counter(), time.process_time()
    end = start + seconds
    done = 0
    while time.perf_counter() < end:
        done += step()
    return done, time.perf_counter() - start, time.process_time() - cpu


def _pkcs11_signer(module: str, key: str, algorithm: str, pin: str) -> Callable[[bytes], bytes]:
    import pkcs11
    from pkcs11 import Attribute, Mechanism, ObjectClass

    from hwgated.hsm.algorithms import DIGEST_INFO_PREFIX

    lib = pkcs11.lib(module)
    for attempt in range(10):
        try:
            token = lib.get_token(token_label=TOKEN_LABEL)
            break
        except pkcs11.exceptions.NoSuchToken:
            lib.reinitialize()
            # p11-kit's client sometimes lists no slot while the server forks for a
            # burst of connections; asking again a moment later finds the token.
            if attempt == 9:
                raise
            time.sleep(0.2)
    session = token.open(user_pin=pin)
    obj = next(
        session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: key})
    )
    if algorithm.startswith("ECDSA"):
        return lambda d: bytes(obj.sign(d, mechanism=Mechanism.ECDSA))
    prefix = DIGEST_INFO_PREFIX["sha256"]
    return lambda d: bytes(obj.sign(prefix + d, mechanism=Mechanism.RSA_PKCS))


def client_pkcs11(args: dict[str, Any], barrier: Any, out: Any) -> None:
    os.environ.update(args["env"])
    sign = _pkcs11_signer(args["module"], args["key"], args["algorithm"], args["pin"])
    digests = _digests(args["algorithm"], args["seed"])

    def step() -> int:
        for d in digests[:8]:
            sign(d)
        return 8

    out.put(_timed(barrier, args["seconds"], step))


def client_unary(args: dict[str, Any], barrier: Any, out: Any) -> None:
    import grpc

    from hwgate.v1 import common_pb2, hsm_pb2, hsm_pb2_grpc

    channel = grpc.insecure_channel(args["target"])
    stub = hsm_pb2_grpc.HsmServiceStub(channel)
    algorithm = common_pb2.SignatureAlgorithm.Value("SIGNATURE_ALGORITHM_" + args["algorithm"])
    requests = [
        hsm_pb2.HsmServiceSignRequest(
            key=hsm_pb2.KeyRef(label=args["key"]), algorithm=algorithm, digest=d
        )
        for d in _digests(args["algorithm"], args["seed"])
    ]
    stub.Sign(requests[0])  # connect
    index = 0

    def step() -> int:
        nonlocal index
        stub.Sign(requests[index % 64])
        index += 1
        return 1

    out.put(_timed(barrier, args["seconds"], step))


def client_stream(args: dict[str, Any], barrier: Any, out: Any) -> None:
    import grpc

    from hwgate.v1 import common_pb2, hsm_pb2, hsm_pb2_grpc

    channel = grpc.insecure_channel(args["target"])
    stub = hsm_pb2_grpc.HsmServiceStub(channel)
    algorithm = common_pb2.SignatureAlgorithm.Value("SIGNATURE_ALGORITHM_" + args["algorithm"])
    key = hsm_pb2.KeyRef(label=args["key"])
    digests = _digests(args["algorithm"], args["seed"])
    batch = args.get("batch", 0)
    window = threading.Semaphore(BATCH_WINDOW if batch else WINDOW)
    stop = threading.Event()

    def requests() -> Iterator[hsm_pb2.SignStreamRequest]:
        i = 0
        while not stop.is_set():
            window.acquire()
            if batch:
                yield hsm_pb2.SignStreamRequest(
                    request_id=i,
                    key=key,
                    algorithm=algorithm,
                    digest_batch=hsm_pb2.DigestBatch(digests=digests[:batch]),
                )
            else:
                yield hsm_pb2.SignStreamRequest(
                    request_id=i, key=key, algorithm=algorithm, digest=digests[i % 64]
                )
            i += 1

    stub.Sign(
        hsm_pb2.HsmServiceSignRequest(key=key, algorithm=algorithm, digest=digests[0])
    )  # connect
    barrier.wait()
    responses = stub.SignStream(requests())
    start, cpu = time.perf_counter(), time.process_time()
    end = start + args["seconds"]
    done = errors = 0
    for response in responses:
        window.release()
        if response.HasField("error"):
            errors += 1
        else:
            done += len(response.signature_batch.signatures) or 1
        if time.perf_counter() >= end:
            break
    elapsed = time.perf_counter() - start
    stop.set()
    window.release()
    responses.cancel()
    out.put((done if not errors else -errors, elapsed, time.process_time() - cpu))


def _guarded(
    target: Callable[..., None], args: dict[str, Any], barrier: Any, out: Any, setup: Any
) -> None:
    """Report a client's failure instead of leaving the parent waiting for its result.

    Clients set up one at a time (``setup`` is released at the barrier): p11-kit's
    server fails some of a burst of simultaneous connections and logins.
    """
    setup.acquire()
    try:
        target(args, _Released(barrier, setup), out)
    except BaseException as exc:
        with contextlib.suppress(ValueError):
            setup.release()  # if this client failed while setting up
        barrier.abort()
        out.put((-1, f"{type(exc).__name__}: {exc}", 0.0))


class _Released:
    """The barrier, releasing the setup lock first (this client is ready)."""

    def __init__(self, barrier: Any, setup: Any) -> None:
        self._barrier, self._setup = barrier, setup

    def wait(self) -> None:
        self._setup.release()
        self._barrier.wait()

    def abort(self) -> None:
        self._barrier.abort()


def run_clients(
    ctx: Ctx, target: Callable[..., None], clients: int, common: dict[str, Any]
) -> tuple[float, int, float]:
    """Start *clients* processes, release them together: total completions per second,
    the completions, and the CPU seconds the clients used while measured."""
    barrier = ctx.Barrier(clients)
    out = ctx.Queue()
    setup = ctx.Lock()
    procs = [
        ctx.Process(target=_guarded, args=(target, {**common, "seed": i}, barrier, out, setup))
        for i in range(clients)
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    if any(done < 0 for done, _, _ in results):
        raise SystemExit(f"{target.__name__}: client errors {results}")
    rate = sum(done / elapsed for done, elapsed, _ in results)
    return rate, sum(done for done, _, _ in results), sum(cpu for _, _, cpu in results)


def _profile(
    args: argparse.Namespace, pid: int, name: str, mode: str
) -> subprocess.Popen[bytes] | None:
    """With --profile DIR: py-spy the daemon (collapsed stacks) during an hwgate mode."""
    if not args.profile or not mode.startswith("hwgate"):
        return None
    out = Path(args.profile) / f"{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = ["py-spy", "record", "-p", str(pid), "-d", str(int(args.seconds + 2)), "-r", "200",
               "--format", "raw", "-o", str(out), "--subprocesses", "--nonblocking"]  # fmt: skip
    spy_bin = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen([str(spy_bin), *command[1:]], stdout=subprocess.DEVNULL)


# -- the run -------------------------------------------------------------------------


Rates = dict[str, dict[str, list[float]]]  # key -> mode@clients -> rate per rep
# key -> mode@clients -> [server CPU s, client CPU s, signatures] over every rep: what one
# signature costs each side, which on 2 cores bounds what the daemon can reach.
Cpu = dict[str, dict[str, list[float]]]


def measure(args: argparse.Namespace) -> tuple[Rates, Cpu]:
    ctx = multiprocessing.get_context("spawn")
    results: Rates = {}
    cpu: Cpu = {}
    with tempfile.TemporaryDirectory(prefix="bench-hsm-") as tmp:
        root = Path(tmp)
        token = provision(root / "testbed")
        pin = Path(token["pin_file"]).read_text().strip()
        daemon, target = start_hwgated(root, token)
        p11kit, address = start_p11kit(root, token)
        try:
            plan: list[tuple[str, Callable[..., None], int, dict[str, Any]]] = []
            direct = {"module": MODULE, "pin": pin, "env": {"SOFTHSM2_CONF": token["conf"]}}
            p11 = {"module": P11KIT_CLIENT, "pin": pin, "env": {"P11_KIT_SERVER_ADDRESS": address}}
            for clients in (1, 2):
                plan.append(("direct", client_pkcs11, clients, direct))
            for clients in (1, 8):
                plan.append(("p11kit", client_pkcs11, clients, p11))
                plan.append(("hwgate-unary", client_unary, clients, {"target": target}))
                plan.append(("hwgate-stream", client_stream, clients, {"target": target}))
                plan.append(
                    ("hwgate-batch", client_stream, clients, {"target": target, "batch": BATCH})
                )
            plan = [p for p in plan if not args.only or f"{p[0]}@{p[2]}" in args.only]
            for rep in range(args.reps):
                for key_name, (key, algorithm) in KEYS.items():
                    for mode, fn, clients, extra in plan:
                        common = {
                            **extra, "key": key, "algorithm": algorithm, "seconds": args.seconds
                        }  # fmt: skip
                        spy = _profile(args, daemon.pid, f"{key_name}-{mode}-{clients}", mode)
                        owner = p11kit if mode == "p11kit" else daemon
                        server = [] if mode == "direct" else process_tree(owner.pid)
                        server0 = cpu_seconds(server)
                        rate, signed, client_cpu = run_clients(ctx, fn, clients, common)
                        used = cpu.setdefault(key_name, {}).setdefault(
                            f"{mode}@{clients}", [0.0, 0.0, 0.0]
                        )
                        used[0] += cpu_seconds(server) - server0
                        used[1] += client_cpu
                        used[2] += signed
                        if spy is not None:
                            spy.wait(60)
                        results.setdefault(key_name, {}).setdefault(f"{mode}@{clients}", []).append(
                            rate
                        )
                        print(
                            f"rep {rep} {key_name:10} {mode:14} x{clients}: {rate:8.0f}/s",
                            flush=True,
                        )
        finally:
            daemon.send_signal(signal.SIGTERM)
            p11kit.terminate()
            daemon.wait(30)
            p11kit.wait(30)
    return results, cpu


# (key, hwgate modes that count, baseline, wanted ratio, text): issue #21's goals 4, 5.
GOALS = [
    ("ecdsa-p256", ("hwgate-unary@8",), "p11kit@8", 0.3, "ECDSA unary 8 clients >= 0.3x p11-kit"),
    ("ecdsa-p256", ("hwgate-batch@8",), "direct@2", 0.9, "ECDSA batches 8 clients >= 0.9x direct"),
    ("rsa-2048", ("hwgate-batch@8",), "direct@2", 0.9, "RSA batches 8 clients >= 0.9x direct"),
]


def report(results: Rates | Any, cpu: Cpu | None = None) -> dict[str, Any]:
    cpu = cpu or {}
    per_signature = {
        key: {
            mode: {"server_us": 1e6 * s / n, "clients_us": 1e6 * c / n}
            for mode, (s, c, n) in used.items()
            if n
        }
        for key, used in cpu.items()
    }
    medians = {
        key: {mode: statistics.median(rates) for mode, rates in modes.items()}
        for key, modes in results.items()
    }
    modes = list(next(iter(medians.values())))
    print(f"\nmedian signatures/s\n{'mode':18}" + "".join(f"{k:>12}" for k in medians))
    for mode in modes:
        print(f"{mode:18}" + "".join(f"{medians[k][mode]:12.0f}" for k in medians))
    goals = []
    print("\ngoals")
    for key, ours, theirs, wanted, text in GOALS:
        counted = [medians[key][m] for m in ours if m in medians[key]]
        if not counted or theirs not in medians[key]:
            continue  # a partial run (--only)
        mine = max(counted)
        ratio = mine / medians[key][theirs]
        met = ratio >= wanted
        goals.append({"goal": text, "ratio": round(ratio, 2), "wanted": wanted, "met": met})
        print(f"  {text:45} {ratio:5.2f}x  {'met' if met else 'MISSED'}")
    print("\nCPU per signature (server = hwgated + its workers, or the p11-kit server)")
    for key, costs in per_signature.items():
        for mode, c in costs.items():
            print(f"  {key:10} {mode:18} server {c['server_us']:7.0f} us  clients "
                  f"{c['clients_us']:7.0f} us")  # fmt: skip
    return {"medians": medians, "runs": results, "goals": goals, "cpu_per_signature": per_signature}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--profile", help="directory for py-spy profiles of the daemon")
    parser.add_argument("--only", nargs="*", help="modes to run, e.g. p11kit@8 hwgate-stream@8")
    args = parser.parse_args()
    results, cpu = measure(args)
    summary = report(results, cpu)
    summary["settings"] = {"seconds": args.seconds, "reps": args.reps, "window": WINDOW,
                           "cpus": os.cpu_count()}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2))
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
