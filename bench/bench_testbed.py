"""Test-bed latencies: APDU round trips through pcscd to the virtual card, and how
long pcscd takes to report an inserted/removed card.

Run: .venv/bin/python bench/bench_testbed.py [--dir DIR] [--apdus 1000] [--inserts 20]
Uses reader slot 0 ("Virtual PCD 00 00"), which must be free.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from smartcard import scard

from hwgate_testbed import orchestrate, pcscd, slots
from hwgate_testbed.paths import TestbedPaths, vpcd_port, vpcd_reader
from hwgate_testbed.vcard.applet import PivApplet
from hwgate_testbed.vcard.atr import ATR
from hwgate_testbed.vcard.profile import CardProfile
from hwgate_testbed.vcard.vpcd import connect, serve

SLOT = 0
SELECT_PIV = bytes.fromhex("00a4040009a00000030800001000")
GET_CHUID = bytes.fromhex("00cb3fff055c035fc10200")
DEADLINE = 10.0
POLL_PERIOD = 0.4  # pcscd's presence polling of vpcd readers
RESULTS = Path(__file__).resolve().parent / "results"


def dephase(enabled: bool) -> None:
    """Start the next insert/remove at a random point of pcscd's 400 ms polling
    cycle. Without this, each iteration begins right after the event that ended
    the previous one, i.e. right after a poll, and always waits a full period.
    (A deliberate pause for the measurement, not synchronisation.)"""
    if enabled:
        time.sleep(random.uniform(0, POLL_PERIOD))


def quantiles(samples_ms: list[float]) -> tuple[float, float, float]:
    """(median, p99, max) in milliseconds."""
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, ordered[-1]


class Card:
    """A pyscard connection with GET RESPONSE handling (counts the APDUs it sent)."""

    def __init__(self, reader: str) -> None:
        hr, self.ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        self._check(hr)
        proto_mask = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        hr, self.handle, self.proto = scard.SCardConnect(
            self.ctx, reader, scard.SCARD_SHARE_SHARED, proto_mask
        )
        self._check(hr)
        self.apdus = 0

    @staticmethod
    def _check(hr: int) -> None:
        if hr != scard.SCARD_S_SUCCESS:
            raise RuntimeError(scard.SCardGetErrorMessage(hr))

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        data = b""
        while True:
            hr, resp = scard.SCardTransmit(self.handle, self.proto, list(apdu))
            self._check(hr)
            self.apdus += 1
            data += bytes(resp[:-2])
            sw = (resp[-2] << 8) | resp[-1]
            if sw >> 8 != 0x61:
                return data, sw
            apdu = bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF])

    def close(self) -> None:
        scard.SCardDisconnect(self.handle, scard.SCARD_LEAVE_CARD)
        scard.SCardReleaseContext(self.ctx)


def timed(n: int, op: Callable[[], object]) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        op()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def bench_apdus(paths: TestbedPaths, n: int) -> list[tuple[str, list[float], str]]:
    slots.insert(paths, SLOT, "alice")
    try:
        card = Card(vpcd_reader(SLOT))
        _, sw = card.transmit(SELECT_PIV)
        assert sw == 0x9000, hex(sw)
        chuid, sw = card.transmit(GET_CHUID)
        assert sw == 0x9000 and chuid[:1] == b"\x53", hex(sw)
        card.apdus = 0
        get = timed(n, lambda: card.transmit(GET_CHUID))
        per_get = card.apdus / n
        sel = timed(n, lambda: card.transmit(SELECT_PIV))
        card.close()
    finally:
        slots.remove(paths, SLOT)
    note = f"{len(chuid)} B, {per_get:.0f} APDU(s) each"
    return [("GET DATA CHUID", get, note), ("SELECT PIV", sel, "1 APDU")]


def bench_insert_in_process(
    paths: TestbedPaths, n: int, jitter: bool
) -> tuple[list[float], list[float]]:
    """Card served from a thread here, so the clock starts at the vpcd connect()."""
    profile = CardProfile.load(paths.card_dir("alice"))
    reader = vpcd_reader(SLOT)
    inserts, removes = [], []
    for _ in range(n):
        dephase(jitter)
        stop = threading.Event()
        sock = connect("127.0.0.1", vpcd_port(SLOT), stop)
        if sock is None:
            raise RuntimeError("vpcd not reachable")
        t_conn = time.monotonic()
        server = threading.Thread(target=serve, args=(sock, PivApplet(profile), ATR, stop))
        server.start()
        seen = pcscd.wait_for_reader_state(reader, True, time.monotonic() + DEADLINE)
        inserts.append((seen - t_conn) * 1000)
        dephase(jitter)
        t_stop = time.monotonic()
        stop.set()
        seen = pcscd.wait_for_reader_state(reader, False, time.monotonic() + DEADLINE)
        removes.append((seen - t_stop) * 1000)
        server.join()
    return inserts, removes


def bench_insert_process(
    paths: TestbedPaths, n: int, jitter: bool
) -> tuple[list[float], list[float]]:
    """The CLI path: start the card process, return once pcscd reports it."""
    inserts, removes = [], []
    for _ in range(n):
        dephase(jitter)
        t0 = time.monotonic()
        slots.insert(paths, SLOT, "alice")
        inserts.append((time.monotonic() - t0) * 1000)
        dephase(jitter)
        t0 = time.monotonic()
        slots.remove(paths, SLOT)
        removes.append((time.monotonic() - t0) * 1000)
    return inserts, removes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, help="test bed dir (default: a temporary one)")
    ap.add_argument("--apdus", type=int, default=1000)
    ap.add_argument("--inserts", type=int, default=20)
    ap.add_argument(
        "--no-dephase", action="store_true", help="insert right after the previous event"
    )
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="hwgate-bench-"))
    paths = TestbedPaths.at(root)
    orchestrate.up(paths, insert_card=False)
    if pcscd.card_present(vpcd_reader(SLOT)):
        print(f"{vpcd_reader(SLOT)} holds a card: slot {SLOT} must be free", file=sys.stderr)
        return 1
    rows: list[tuple[str, list[float], str]] = []
    try:
        rows += bench_apdus(paths, args.apdus)
        ins, rem = bench_insert_in_process(paths, args.inserts, not args.no_dephase)
        rows += [("insert: vpcd connect -> event", ins, "in-process card"),
                 ("remove: card close -> event", rem, "in-process card")]  # fmt: skip
        ins, rem = bench_insert_process(paths, args.inserts, not args.no_dephase)
        rows += [("insert: process start -> event", ins, "hwgate-testbed insert path"),
                 ("remove: SIGTERM -> event", rem, "hwgate-testbed remove path")]  # fmt: skip
    finally:
        orchestrate.down(paths)
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'measurement':34} {'n':>5} {'median ms':>10} {'p99 ms':>9} {'max ms':>9}  note")
    summary = []
    for name, samples, note in rows:
        med, p99, worst = quantiles(samples)
        print(f"{name:34} {len(samples):5d} {med:10.3f} {p99:9.3f} {worst:9.3f}  {note}")
        summary.append({"name": name, "n": len(samples), "median_ms": med, "p99_ms": p99,
                        "max_ms": worst, "note": note})  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "testbed.json").write_text(json.dumps({"rows": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
