"""µs per worker frame: the fixed-schema wire format (hsm/wire.py) vs pickle, same run.

Typical frames of a unary Sign (request with a KeyRef and an enum, reply with
a 71-byte signature) and of a 64-digest sign_many slice. Both encoders run on
the same messages in one process, so the ratio is meaningful on a noisy
machine even when the absolute numbers are not. Best of REPEAT runs.

Run: .venv/bin/python bench/bench_wire.py   (pure CPU, a few seconds; no test bed)
"""

from __future__ import annotations

import os
import pickle
import timeit
from collections.abc import Callable
from typing import Any

from hwgated.hsm import wire
from hwgated.hsm.keyref import KeyClass, KeyRef
from hwgated.hsm.types import SignAlgorithm

REPEAT = 7
NUMBER = 3000

REF = KeyRef(label="signer-p256", id=bytes.fromhex("0102"), key_class=KeyClass.PRIVATE)
FRAMES: dict[str, Any] = {
    "sign request": (12345, "sign", (REF, SignAlgorithm.ECDSA_SHA256, os.urandom(32)), {}),
    "sign reply": (12345, True, os.urandom(71)),
    "sign_many(64) request": (
        7,
        "sign_many",
        (REF, SignAlgorithm.ECDSA_SHA256, [os.urandom(32) for _ in range(64)]),
        {},
    ),
    "sign_many(64) reply": (7, True, [os.urandom(71) for _ in range(64)]),
}


def best_us(func: Callable[[], object]) -> float:
    return min(timeit.repeat(func, number=NUMBER, repeat=REPEAT)) / NUMBER * 1e6


def measure(message: Any) -> dict[str, float]:
    body = wire.encode_value(message)
    pickled = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return {
        "pickle_encode": best_us(lambda: pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)),
        "pickle_decode": best_us(lambda: pickle.loads(pickled)),
        "wire_encode": best_us(lambda: wire.encode_value(message)),
        "wire_decode": best_us(lambda: wire.decode(body)),
        "pickle_bytes": len(pickled),
        "wire_bytes": len(body),
    }


def main() -> None:
    print(f"{'frame':24} {'pickle enc/dec µs':>18} {'wire enc/dec µs':>16} {'bytes p/w':>10}")
    for name, message in FRAMES.items():
        r = measure(message)
        print(
            f"{name:24} {r['pickle_encode']:8.2f} /{r['pickle_decode']:7.2f} "
            f"{r['wire_encode']:7.2f} /{r['wire_decode']:7.2f} "
            f"{r['pickle_bytes']:5.0f}/{r['wire_bytes']:<5.0f}"
        )


if __name__ == "__main__":
    main()
