"""RSS probe: does the daemon leak under HSM key-management storms, or is it allocator
high-water? (issue 25)

The daemon runs in this process (``hwgated.server.Daemon`` on the test bed's own
config, written by ``hwgate-testbed up``) with tracemalloc recording 25 frames;
client processes drive storms of HsmService calls over the admin socket
(GenerateKey + Sign + Derive + DeleteKey + ListKeys, plus refused calls).
Phases: warm-up storm, sample A, storm round 1, sample B, storm round 2, sample C,
...; each sample is taken with the load stopped, after ``gc.collect()``.

A sample records VmRSS/VmHWM, the bytes Python has allocated (tracemalloc), glibc's
view (``mallinfo2``: in use vs free-but-held) and VmRSS again after
``malloc_trim(0)``, plus each HSM worker process's RSS. Snapshots are dumped to the
work directory and compared at the end (``compare_to(..., "traceback")``), so the
comparison's own garbage does not sit in a later sample.

Reading it: a leak grows the traced bytes round after round, by a similar amount,
at the same sites; allocator high-water shows RSS well above traced + tracemalloc's
own overhead that ``malloc_trim`` mostly gives back, and flat traced bytes.

Run (private pcscd; about one CPU-minute per round of 60 s)::

    testbed/isolated .venv/bin/python -m bench.rss_probe [--rounds 2] [--seconds 60]
    # add fuzzer-like requests (fresh ListKeys patterns, URIs with random serials):
    testbed/isolated .venv/bin/python -m bench.rss_probe --fuzz
    # RSS without tracemalloc's own overhead, with 200 KiB requests mixed in, at glibc's
    # default and with the systemd unit's fixed mmap threshold:
    testbed/isolated .venv/bin/python -m bench.rss_probe --no-trace --fuzz --big 200
    MALLOC_MMAP_THRESHOLD_=131072 testbed/isolated .venv/bin/python -m bench.rss_probe \
        --no-trace --fuzz --big 200

Each sample calls ``malloc_trim(0)`` after reading RSS, so "after trim" is what the
allocator held but did not use; the next round starts from the trimmed heap.

Writes bench/results/rss_probe[_fuzz][_bigN][_notrace].json; prints the samples and the
top sites.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
FRAMES = 25
TOP = 12  # sites kept in the JSON; the first 5 are printed
LABEL_PREFIX = "rss-"


# --- the storm (client processes) ----------------------------------------------------


def _client_thread(
    target: str,
    seconds: float,
    seed: str,
    fuzz: bool,
    big_kb: int,
    counts: Counter[str],
    examples: dict[str, str],
) -> None:
    """One caller: key life cycles and signatures in a loop until *seconds* pass; with
    *fuzz*, also fuzzer-like requests (fresh random patterns and URI attributes); with
    *big_kb*, also requests of that size (key references far over their limit)."""
    import grpc
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from hwgate.v1 import common_pb2 as c
    from hwgate.v1 import hsm_pb2 as h
    from hwgate.v1 import hsm_pb2_grpc

    rng = random.Random(seed)
    stub = hsm_pb2_grpc.HsmServiceStub(grpc.insecure_channel(target))

    def ref(label: str = "", id: bytes = b"") -> Any:
        return h.KeyRef(id=id) if id else h.KeyRef(label=label)  # a oneof

    def call(name: str, method: Any, request: Any) -> Any:
        try:
            reply = method(request, timeout=30)
        except grpc.RpcError as exc:
            outcome = f"{name}:{exc.code().name}"
            counts[outcome] += 1
            examples.setdefault(outcome, str(exc.details()))
            return None
        counts[f"{name}:OK"] += 1
        return reply

    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        i += 1
        label = f"{LABEL_PREFIX}{seed}-{i}"
        digest = rng.randbytes(32)
        algorithm = c.KEY_ALGORITHM_AES_256 if i % 7 == 0 else c.KEY_ALGORITHM_EC_P256
        pair = call(
            "GenerateKey",
            stub.GenerateKey,
            h.GenerateKeyRequest(label=label, algorithm=algorithm),
        )
        if pair is not None and algorithm == c.KEY_ALGORITHM_EC_P256:
            for by in (ref(label), ref(id=pair.key.id)):
                sign = h.HsmServiceSignRequest(
                    key=by, algorithm=c.SIGNATURE_ALGORITHM_ECDSA_SHA256, digest=digest
                )
                call("Sign", stub.Sign, sign)
        call(
            "Sign",
            stub.Sign,
            h.HsmServiceSignRequest(
                key=ref("signer-p256"), algorithm=c.SIGNATURE_ALGORITHM_ECDSA_SHA256, digest=digest
            ),
        )
        template = h.DerivedKeyTemplate(
            label=f"{label}-d", algorithm=c.KEY_ALGORITHM_AES_256, persistent=True
        )
        call(
            "Derive",
            stub.Derive,
            h.DeriveRequest(
                base_key=ref("activation-master"),
                aes_ecb_encrypt_data=h.AesEcbEncryptDataDerivation(data=rng.randbytes(32)),
                template=template,
            ),
        )
        if i % 3 == 0:
            peer = ec.generate_private_key(ec.SECP256R1()).public_key()
            point = peer.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            template = h.DerivedKeyTemplate(
                label=f"{label}-e", algorithm=c.KEY_ALGORITHM_AES_128, persistent=True
            )
            call(
                "Derive",
                stub.Derive,
                h.DeriveRequest(
                    base_key=ref("ecdh-p256"),
                    ecdh=h.EcdhDerivation(peer_public_key=point),
                    template=template,
                ),
            )
            call("DeleteKey", stub.DeleteKey, h.DeleteKeyRequest(key=ref(f"{label}-e")))
        # Refusals, as a fuzzer produces them: unknown key, taken label, bad digest, bad id.
        bad = i % 4
        if bad == 0:
            call(
                "Sign", stub.Sign, h.HsmServiceSignRequest(key=ref(f"{label}-none"), digest=digest)
            )
        elif bad == 1:
            call(
                "GenerateKey",
                stub.GenerateKey,
                h.GenerateKeyRequest(label="signer-p256", algorithm=c.KEY_ALGORITHM_EC_P256),
            )
        elif bad == 2:
            sign = h.HsmServiceSignRequest(
                key=ref("signer-p256"),
                algorithm=c.SIGNATURE_ALGORITHM_ECDSA_SHA256,
                digest=digest[:7],
            )
            call("Sign", stub.Sign, sign)
        else:
            call("DeleteKey", stub.DeleteKey, h.DeleteKeyRequest(key=ref(id=rng.randbytes(8))))
        call("DeleteKey", stub.DeleteKey, h.DeleteKeyRequest(key=ref(f"{label}-d")))
        call("DeleteKey", stub.DeleteKey, h.DeleteKeyRequest(key=ref(label)))
        if fuzz:
            # What a field fuzzer sends (tests/fuzz/test_fuzz_rpc.py: text of up to 40
            # characters): a fresh pattern per call, and a URI naming a real key with a
            # serial attribute the token does not check (the config names no serial).
            pattern = _random_text(rng)
            call("ListKeys", stub.ListKeys, h.ListKeysRequest(label_pattern=pattern))
            uri = f"pkcs11:object=signer-p256;type=private;serial={quote(_random_text(rng))}"
            sign = h.HsmServiceSignRequest(
                key=h.KeyRef(uri=uri), algorithm=c.SIGNATURE_ALGORITHM_ECDSA_SHA256, digest=digest
            )
            call("SignUri", stub.Sign, sign)
        elif i % 10 == 0:
            call("ListKeys", stub.ListKeys, h.ListKeysRequest())
        for n in range(3 if big_kb else 0):
            # Large requests: gRPC's receive buffers go through malloc, whatever the answer.
            uri = f"pkcs11:object=signer-p256;serial={seed}-{i}-{n}-".ljust(big_kb * 1024, "s")
            sign = h.HsmServiceSignRequest(
                key=h.KeyRef(uri=uri), algorithm=c.SIGNATURE_ALGORITHM_ECDSA_SHA256, digest=digest
            )
            call("SignBig", stub.Sign, sign)


def _random_text(rng: random.Random) -> str:
    """Up to 40 printable characters, some beyond ASCII, as hypothesis' text() draws."""
    return "".join(
        chr(rng.choice((rng.randrange(32, 127), rng.randrange(160, 0x250))))
        for _ in range(rng.randrange(1, 41))
    )


def client_main(
    target: str, seconds: float, threads: int, seed: str, fuzz: bool, big_kb: int
) -> None:
    """A load process: *threads* callers; prints the call outcomes as JSON."""
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    workers = [
        threading.Thread(
            target=_client_thread,
            args=(target, seconds, f"{seed}t{n}", fuzz, big_kb, counts, examples),
        )
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps({"counts": counts, "examples": examples}))


async def storm(target: str, seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    """Run *clients* load processes for *seconds*; their summed call outcomes and an
    example message per refusal."""
    tag = uuid.uuid4().hex[:6]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.rss_probe",
            "--client",
            target,
            "--seconds",
            str(seconds),
            "--threads",
            str(args.threads),
            "--seed",
            f"{tag}p{n}",
            *(["--fuzz"] if args.fuzz else []),
            f"--big={args.big}",
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        for n in range(args.clients)
    ]
    total: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for proc in procs:
        out, _ = await proc.communicate()
        if proc.returncode == 0 and out:
            report = json.loads(out.decode().strip().splitlines()[-1])
            total.update(report["counts"])
            examples.update(report["examples"])
        else:
            total[f"client-exit-{proc.returncode}"] += 1
    return {"seconds": seconds, "counts": dict(sorted(total.items())), "examples": examples}


# --- samples (the daemon's process) ----------------------------------------------------


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = _Mallinfo2
_LIBC.malloc_trim.argtypes = [ctypes.c_size_t]


def status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS, VmHWM (MB), threads of a process from /proc."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
        elif key == "Threads":
            out[key] = int(value)
    return out


def mallinfo() -> dict[str, float]:
    """glibc's heap (MB): arena = sbrk'd + arena heaps, in use, free but held, mmapped."""
    info = _LIBC.mallinfo2()
    mb = 1 << 20
    return {
        "arena": round(info.arena / mb, 1),
        "in_use": round(info.uordblks / mb, 1),
        "free_held": round(info.fordblks / mb, 1),
        "mmapped": round(info.hblkhd / mb, 1),
        "free_chunks": int(info.ordblks),
    }


def sample(name: str, workdir: Path, worker_pids: list[int]) -> dict[str, Any]:
    """One measurement with the load stopped; dumps the tracemalloc snapshot."""
    gc.collect()
    point: dict[str, Any] = {"name": name, **status()}
    point["fds"] = len(os.listdir("/proc/self/fd"))
    point["malloc"] = mallinfo()
    if tracemalloc.is_tracing():
        traced, peak = tracemalloc.get_traced_memory()
        point["traced_mb"] = round(traced / (1 << 20), 2)
        point["traced_peak_mb"] = round(peak / (1 << 20), 2)
        point["tracemalloc_overhead_mb"] = round(
            tracemalloc.get_tracemalloc_memory() / (1 << 20), 1
        )
        snapshot = tracemalloc.take_snapshot().filter_traces(
            (
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
            )
        )
        snapshot.dump(str(workdir / f"{name}.snapshot"))
        del snapshot
        tracemalloc.reset_peak()
        gc.collect()
    _LIBC.malloc_trim(0)
    point["VmRSS_after_trim"] = status()["VmRSS"]
    point["malloc_after_trim"] = mallinfo()
    point["workers"] = {str(pid): status(pid)["VmRSS"] for pid in worker_pids}
    return point


def _condensed(traceback: tracemalloc.Traceback) -> list[str]:
    """Frames outside the standard library (asyncio plumbing says nothing about a site),
    a run of frames in one file as ``file:first..last``; innermost last."""
    runs: list[tuple[str, list[int]]] = []
    for frame in traceback:  # oldest first
        name = frame.filename
        if "/lib/python3" in name and "/site-packages/" not in name:
            continue
        name = name.rsplit("/site-packages/", 1)[-1].replace(str(REPO) + "/", "")
        if runs and runs[-1][0] == name:
            runs[-1][1].append(frame.lineno)
        else:
            runs.append((name, [frame.lineno]))
    out = []
    for name, lines in runs:
        span = str(lines[0]) if len(lines) == 1 else f"{lines[0]}..{lines[-1]}"
        out.append(f"{name}:{span}")
    return out or [f"{traceback[-1].filename}:{traceback[-1].lineno}"]


def compare(workdir: Path, before: str, after: str) -> dict[str, Any]:
    """Top sites by growth between two dumped snapshots, by traceback."""
    old = tracemalloc.Snapshot.load(str(workdir / f"{before}.snapshot"))
    new = tracemalloc.Snapshot.load(str(workdir / f"{after}.snapshot"))
    stats = new.compare_to(old, "traceback")
    total = sum(s.size_diff for s in stats)
    top = []
    for stat in stats[:TOP]:
        frames = _condensed(stat.traceback)
        top.append(
            {
                "size_diff_kb": round(stat.size_diff / 1024, 1),
                "count_diff": stat.count_diff,
                "size_kb": round(stat.size / 1024, 1),
                "count": stat.count,
                "frames": frames[-10:],  # innermost last
            }
        )
    by_line = new.compare_to(old, "lineno")[:TOP]
    return {
        "between": f"{before}->{after}",
        "total_diff_kb": round(total / 1024, 1),
        "top_tracebacks": top,
        "top_lines": [
            f"{s.traceback[0].filename.rsplit('/site-packages/', 1)[-1]}:{s.traceback[0].lineno} "
            f"{s.size_diff / 1024:+.1f} KiB ({s.count_diff:+d} blocks)"
            for s in by_line
        ],
    }


async def cleanup(target: str) -> int:
    """Delete keys a killed client may have left (``rss-*``); the number deleted."""
    import grpc

    from hwgate.v1 import hsm_pb2, hsm_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = hsm_pb2_grpc.HsmServiceStub(channel)
        keys = await stub.ListKeys(hsm_pb2.ListKeysRequest(label_pattern=f"{LABEL_PREFIX}*"))
        for label in sorted({k.label for k in keys.keys}):
            await stub.DeleteKey(hsm_pb2.DeleteKeyRequest(key=hsm_pb2.KeyRef(label=label)))
        return len({k.label for k in keys.keys})


async def probe(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from hwgate_testbed import orchestrate
    from hwgate_testbed.paths import TestbedPaths
    from hwgated.config import load_config
    from hwgated.logsetup import setup_logging
    from hwgated.server import Daemon

    paths = TestbedPaths.at(workdir / "testbed")
    orchestrate.up(paths, insert_card=False)
    config = load_config(paths.daemon_config)
    setup_logging("warning", "stderr")
    if args.trace:
        tracemalloc.start(FRAMES)
    daemon = Daemon(config, "warning")
    target = f"unix:{paths.admin_socket}"
    result: dict[str, Any] = {
        "args": vars(args),
        "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX"),
        "samples": [],
        "storms": [],
    }
    try:
        await daemon.start()
        pool = daemon.hsm["testbed"]
        result["samples"].append(sample("started", workdir, pool.worker_pids()))
        result["storms"].append(await storm(target, args.warmup, args))
        names = [chr(ord("A") + n) for n in range(args.rounds + 1)]
        for n, name in enumerate(names):
            if n:
                result["storms"].append(await storm(target, args.seconds, args))
            point = sample(name, workdir, pool.worker_pids())
            result["samples"].append(point)
            _print_sample(point)
        result["leftover_keys"] = await cleanup(target)
    finally:
        await daemon.stop()
        orchestrate.down(paths)
    if args.trace:
        tracemalloc.stop()
        result["compare"] = [compare(workdir, a, b) for a, b in itertools.pairwise(names)]
    return result


def _print_sample(point: dict[str, Any]) -> None:
    traced = f" traced {point['traced_mb']:.1f} MB" if "traced_mb" in point else ""
    print(
        f"{point['name']}: RSS {point['VmRSS']:.1f} MB (HWM {point['VmHWM']:.1f}),"
        f" after trim {point['VmRSS_after_trim']:.1f};{traced}"
        f" malloc in use {point['malloc']['in_use']:.1f} free held"
        f" {point['malloc']['free_held']:.1f}; threads {point['Threads']}, fds {point['fds']};"
        f" workers {point['workers']}",
        flush=True,
    )


def print_result(result: dict[str, Any]) -> None:
    for storm_result in result["storms"]:
        counts = storm_result["counts"]
        print(f"storm {storm_result['seconds']:g}s:", sum(counts.values()), "calls", counts)
        for outcome, message in storm_result["examples"].items():
            print(f"   {outcome}: {message}")
    for comparison in result.get("compare", []):
        print(f"\n{comparison['between']}: {comparison['total_diff_kb']:+.1f} KiB traced")
        for line in comparison["top_lines"][:5]:
            print("  ", line)
        for site in comparison["top_tracebacks"][:5]:
            print(f"  {site['size_diff_kb']:+.1f} KiB ({site['count_diff']:+d}):")
            for frame in site["frames"]:
                print("      ", frame)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="storm rounds after sample A")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of a round")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=2, help="load processes")
    parser.add_argument("--threads", type=int, default=3, help="callers per load process")
    parser.add_argument("--no-trace", dest="trace", action="store_false")
    parser.add_argument(
        "--fuzz", action="store_true", help="add fuzzer-like requests (random patterns, URIs)"
    )
    parser.add_argument(
        "--big", type=int, default=0, metavar="KIB", help="add requests of this size (0: none)"
    )
    parser.add_argument("--client", metavar="TARGET", help=argparse.SUPPRESS)
    parser.add_argument("--seed", default="0", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.client, args.seconds, args.threads, args.seed, args.fuzz, args.big)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="hwgate-rss-"))
    try:
        result = asyncio.run(probe(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    mix = ("_fuzz" if args.fuzz else "") + (f"_big{args.big}" if args.big else "")
    name = f"rss_probe{mix}{'' if args.trace else '_notrace'}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2))
    print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
