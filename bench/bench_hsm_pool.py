"""Signatures per second: direct python-pkcs11 in-process vs hwgate's HsmPool.

Makes a throwaway SoftHSM2 token in a temp dir with an EC P-256 and an RSA-2048
key, then measures for each key:

- direct: python-pkcs11 in this process, one thread, one session (the ceiling);
- pool, 1 caller: one asyncio task awaiting ``pool.sign`` in a loop (latency-bound);
- pool, 8 callers: eight tasks (throughput with both workers busy);
- pool sign_many: batches of 64 digests, 1 and 2 callers.

Run: .venv/bin/python bench/bench_hsm_pool.py [--seconds 2] [--workers 2] [--depth 4]
The machine is shared and noisy: compare numbers from the same run only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hwgated.hsm import HsmPool, SignAlgorithm, TokenConfig

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
LABEL = "hwgate-bench"
PIN = "1234"
DIGEST = hashlib.sha256(b"bench").digest()
KEYS = (
    ("ECDSA P-256", "ec", SignAlgorithm.ECDSA_SHA256),
    ("RSA-2048", "rsa", SignAlgorithm.RSA_PKCS1_SHA256),
)


def make_token(base: Path) -> Path:
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            LABEL,
            "--so-pin",
            "5678",
            "--pin",
            PIN,
        ],
        check=True,
        capture_output=True,
    )
    (base / "pin").write_text(PIN)
    return conf


def direct(seconds: float) -> dict[str, float]:
    """Create the keys and measure in-process signing (one thread)."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism
    from pkcs11.util.ec import encode_named_curve_parameters

    from hwgated.hsm.algorithms import DIGEST_INFO_PREFIX
    from hwgated.hsm.p11sign import der_ecdsa_signature

    tok = pkcs11.lib(MODULE).get_token(token_label=LABEL)
    results: dict[str, float] = {}
    with tok.open(rw=True, user_pin=PIN) as session:
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        _, ec_key = params.generate_keypair(store=True, label="ec")
        _, rsa_key = session.generate_keypair(KeyType.RSA, 2048, store=True, label="rsa")
        prefixed = DIGEST_INFO_PREFIX["sha256"] + DIGEST
        ops: dict[str, Callable[[], object]] = {
            "ec": lambda: der_ecdsa_signature(ec_key.sign(DIGEST, mechanism=Mechanism.ECDSA)),
            "rsa": lambda: rsa_key.sign(prefixed, mechanism=Mechanism.RSA_PKCS),
        }
        for name, op in ops.items():
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                op()
                n += 1
            results[name] = n / (time.perf_counter() - start)
    return results


async def pool_rate(
    pool: HsmPool, key: str, alg: SignAlgorithm, callers: int, seconds: float, batch: int = 0
) -> float:
    count = 0
    deadline = time.perf_counter() + seconds
    digests = [DIGEST] * batch

    async def caller() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            if batch:
                count += len(await pool.sign_many(key, alg, digests))
            else:
                await pool.sign(key, alg, DIGEST)
                count += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return count / (time.perf_counter() - start)


async def bench_pool(conf: Path, base: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    config = TokenConfig(
        name="bench",
        module=MODULE,
        token_label=LABEL,
        pin_file=str(base / "pin"),
        workers=args.workers,
        env={"SOFTHSM2_CONF": str(conf)},
    )
    pool = HsmPool(config, pipeline_depth=args.depth)
    await pool.start()
    if not await pool.wait_ready(60):
        raise SystemExit(f"pool not ready: {pool.last_error}")
    out: dict[str, list[float]] = {}
    try:
        for _, key, alg in KEYS:
            await pool_rate(pool, key, alg, 8, 0.3)  # warm up both workers' key caches
            out[key] = [
                await pool_rate(pool, key, alg, 1, args.seconds),
                await pool_rate(pool, key, alg, 8, args.seconds),
                await pool_rate(pool, key, alg, 1, args.seconds, batch=64),
                await pool_rate(pool, key, alg, 2, args.seconds, batch=64),
            ]
    finally:
        await pool.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--depth", type=int, default=4, help="pipeline depth per worker")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        conf = make_token(base)
        direct_rates = direct(args.seconds)
        pool_rates = asyncio.run(bench_pool(conf, base, args))
    print(
        f"sig/s, {args.workers} workers, pipeline depth {args.depth}, {args.seconds:g}s per figure"
    )
    header = ("key", "direct 1 thr", "pool 1 caller", "pool 8 callers", "many64 x1", "many64 x2")
    print("{:<12} {:>13} {:>14} {:>15} {:>10} {:>10}".format(*header))
    for title, key, _ in KEYS:
        row = [direct_rates[key], *pool_rates[key]]
        print("{:<12} {:>13.0f} {:>14.0f} {:>15.0f} {:>10.0f} {:>10.0f}".format(title, *row))


if __name__ == "__main__":
    main()
