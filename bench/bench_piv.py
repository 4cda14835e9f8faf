"""PivService benchmark: VerifyPin + Sign (9C, ECDSA P-256) through hwgate vs direct pyscard.

One round = what a kiosk does per signature on a "PIN always" key: VerifyPin,
then Sign. Through hwgate that is two gRPC calls (the daemon sends an empty
VERIFY for the retry count, the VERIFY, then GENERAL AUTHENTICATE, and checks
the signature against the 9C certificate). The baseline sends the same three
APDUs with pyscard to the same kind of card in the other reader. Both sides
run n rounds after a warm-up; median and p99 per round.

Run inside a private pcscd: ``testbed/isolated .venv/bin/python bench/bench_piv.py``.
Writes bench/results/piv.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from smartcard import scard

from hwgate.v1 import card_pb2, card_pb2_grpc, common_pb2, piv_pb2, piv_pb2_grpc
from hwgate_testbed import orchestrate, slots
from hwgate_testbed.paths import TestbedPaths, vpcd_reader
from hwgated.piv import commands
from hwgated.piv.apdu import transceive
from hwgated.piv.slots import Algorithm, Slot

R0, R1 = vpcd_reader(0), vpcd_reader(1)
PIN = b"123456"
DIGEST = hashlib.sha256(b"bench").digest()
RESULTS = Path(__file__).parent / "results"
WARMUP = 20


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(ms), "p99_ms": pct(ms, 0.99), "n": len(ms)}


def time_rounds(round_trip: Callable[[], None], n: int) -> list[float]:
    for _ in range(WARMUP):
        round_trip()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        round_trip()
        out.append((time.perf_counter() - t0) * 1000)
    return out


class Direct:
    """The baseline: the same APDUs hwgate sends, straight through pyscard."""

    def __init__(self, reader: str) -> None:
        _, self.ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        rv, self.card, self.proto = scard.SCardConnect(
            self.ctx,
            reader,
            scard.SCARD_SHARE_EXCLUSIVE,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        assert rv == 0, scard.SCardGetErrorMessage(rv)
        transceive(self.transmit, commands.select_piv())

    def transmit(self, apdu: bytes) -> bytes:
        rv, resp = scard.SCardTransmit(self.card, self.proto, list(apdu))
        assert rv == 0, scard.SCardGetErrorMessage(rv)
        return bytes(resp)

    def round_trip(self) -> None:
        status = transceive(self.transmit, commands.verify_status())
        assert status.sw in (0x9000, 0x63C3), hex(status.sw)
        verify = commands.verify_pin(bytearray(PIN))
        assert transceive(self.transmit, verify).sw == 0x9000
        verify.wipe()
        sign = commands.general_authenticate(Slot.SIGNATURE, Algorithm.ECCP256, DIGEST)
        resp = transceive(self.transmit, sign)
        assert resp.sw == 0x9000 and commands.parse_general_authenticate(resp.data)

    def close(self) -> None:
        scard.SCardDisconnect(self.card, scard.SCARD_RESET_CARD)
        scard.SCardReleaseContext(self.ctx)


class ThroughHwgate:
    def __init__(self, channel: grpc.Channel, reader: str) -> None:
        self.piv = piv_pb2_grpc.PivServiceStub(channel)
        cards = card_pb2_grpc.CardServiceStub(channel)
        self.session = cards.OpenSession(card_pb2.OpenSessionRequest(reader=reader)).session_id
        self.verify = piv_pb2.VerifyPinRequest(session_id=self.session, pin=PIN)
        self.sign = piv_pb2.PivServiceSignRequest(
            session_id=self.session,
            slot=piv_pb2.SLOT_DIGITAL_SIGNATURE,
            digest=DIGEST,
            algorithm=common_pb2.SIGNATURE_ALGORITHM_ECDSA_SHA256,
        )

    def round_trip(self) -> None:
        assert self.piv.VerifyPin(self.verify, timeout=10).HasField("session_expire_time")
        assert self.piv.Sign(self.sign, timeout=10).signature


def start_daemon(work: Path) -> tuple[subprocess.Popen[bytes], grpc.Channel]:
    sock = work / "hwgate.sock"
    config = work / "hwgated.toml"
    config.write_text(
        f'[daemon]\nlog_level = "warning"\n[[listen]]\nunix = "{sock}"\nrole = "admin"\n'
        f'[pcsc]\nreaders = ["{R0}"]\nmax_session_ttl = 300\n'
        "[limits]\nverify_pin_per_minute = 1000000\n"
        '[policy.roles.admin]\nallow = ["*"]\n[[policy.readers]]\npattern = "*"\n'
        'roles = ["admin"]\n'
    )
    daemon = subprocess.Popen([sys.executable, "-m", "hwgated", "--config", str(config)])
    channel = grpc.insecure_channel(f"unix:{sock}")
    grpc.channel_ready_future(channel).result(timeout=20)
    return daemon, channel


def wait_for_card(channel: grpc.Channel, reader: str, timeout: float = 10.0) -> None:
    """Until the daemon reports a PIV card in *reader* (snapshot or CARD_INSERTED event)."""
    stub = card_pb2_grpc.CardServiceStub(channel)
    events = stub.WatchEvents(card_pb2.WatchEventsRequest(), timeout=timeout)
    try:
        for event in events:
            if event.reader == reader and event.card.is_piv:
                return
    finally:
        events.cancel()
    raise TimeoutError(f"hwgated never saw the card in {reader}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="VerifyPin+Sign rounds per side")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hwgate-bench-piv-"))
    paths = TestbedPaths.at(work / "testbed")
    orchestrate.up(paths, insert_card=False)
    daemon, channel = start_daemon(work)
    try:
        orchestrate.insert(paths, 0, "alice", "ecc")
        orchestrate.insert(paths, 1, "alice", "ecc")
        wait_for_card(channel, R0)
        hwgate = time_rounds(ThroughHwgate(channel, R0).round_trip, args.n)
        direct_card = Direct(R1)
        try:
            direct = time_rounds(direct_card.round_trip, args.n)
        finally:
            direct_card.close()
        report = {"hwgate": summary(hwgate), "direct": summary(direct)}
    finally:
        channel.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        for slot in (0, 1):
            slots.remove(paths, slot)
        orchestrate.down(paths)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "piv.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    return 0


def print_table(report: dict[str, dict[str, float]]) -> None:
    print("\nVerifyPin + Sign(9C, ECDSA P-256)   median ms   p99 ms      n")
    for name, label in (("hwgate", "through hwgate (2 gRPC calls)"), ("direct", "direct pyscard")):
        row = report[name]
        print(f"{label:<35} {row['median_ms']:9.3f} {row['p99_ms']:8.3f} {int(row['n']):6d}")
    ratio = report["hwgate"]["median_ms"] / report["direct"]["median_ms"]
    print(f"{'overhead (median ratio)':<35} {ratio:9.2f}x")


if __name__ == "__main__":
    sys.exit(main())
