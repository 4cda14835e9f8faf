"""20 kiosks enrolling at once against two enrollment-server processes that share one
PostgreSQL database: every challenge and every activation code is used at most
once, the per-cardholder cap holds across the processes, and no enrollment is lost."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from apps_support import PIN, kiosk_client
from cryptography.hazmat.primitives.asymmetric import ec

from hwgate_apps import web
from hwgate_apps.devpki import kiosk_certificate, web_certificate
from hwgate_apps.enrollment.config import EnrollmentConfig
from hwgate_apps.enrollment.store import Store
from hwgate_apps.phone.wallet import make_csr
from hwgate_apps.stack import Stack, enrollment_config
from hwgate_testbed.paths import vpcd_reader

pytestmark = [pytest.mark.testbed, pytest.mark.slow]
KIOSKS = 20
EXTRA = 5  # enrollments past the cardholder's cap (= KIOSKS)
# The one public origin both servers stand behind (as behind a load balancer):
# the card's proof is bound to it, whichever process checks it.
ORIGIN = "https://enroll.hwgate.test"
SERVER_START = 90.0  # seconds a request may wait for a server still starting


def config_toml(config: EnrollmentConfig) -> str:
    """The config as the TOML file the server reads (JSON strings and lists are TOML;
    a table is written inline)."""
    lines = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None:
            continue
        if isinstance(value, dict):
            pairs = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items())
            lines.append(f"{field.name} = {{{pairs}}}")
            continue
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Path):
            value = str(value)
        lines.append(f"{field.name} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def servers(stack: Stack, workdir: Path, database: str, count: int) -> Iterator[list[Server]]:
    """*count* enrollment-server processes on one database, each on a socket bound here
    (requests queue in the kernel until the process serves)."""
    config = enrollment_config(stack.paths, workdir, 0, origin=ORIGIN, database=database,
                               max_credentials_per_cardholder=KIOSKS)  # fmt: skip
    toml = workdir / "enrollment.toml"
    toml.write_text(config_toml(config))
    cert, key = web_certificate(stack.paths.pki, workdir / "tls")
    started: list[Server] = []
    try:
        for i in range(count):
            sock = web.bind("127.0.0.1", 0)
            log = workdir / f"enrollment-{i}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "hwgate_apps.enrollment", "--config", str(toml),
                     "--tls-cert", str(cert), "--tls-key", str(key), "--fd", str(sock.fileno())],
                    pass_fds=[sock.fileno()], stdout=out, stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )  # fmt: skip
            started.append(Server(f"https://127.0.0.1:{sock.getsockname()[1]}", proc, log))
            sock.close()  # the child has its own copy
        yield started
    finally:
        for server in started:
            server.process.send_signal(signal.SIGTERM)
        for server in started:
            try:
                server.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


def parallel(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run *calls* at the same moment (a barrier releases them together)."""
    gate = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        gate.wait(timeout=60)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def test_twenty_kiosks_two_servers_one_postgresql_database(
    stack: Stack, cards: object, postgres_url: str, tmp_path: Path
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    pki = stack.paths.pki
    kiosk_tls = [
        web.tls_context(stack.tls_ca, *map(str, kiosk_certificate(pki, tmp_path, f"pg-{i:02d}")))
        for i in range(KIOSKS)
    ]
    admin_tls = web.tls_context(stack.tls_ca, str(stack.paths.pki_cert("admin")),
                                str(stack.paths.pki_key("admin")))  # fmt: skip
    phone_tls = web.tls_context(stack.tls_ca)
    # Enrollment j: kiosk j % 20. The first 20 are one per kiosk; the last EXTRA are a
    # second one at kiosks 0..4, past the cardholder's cap of 20 credentials.
    total = KIOSKS + EXTRA
    kiosk_of = [j % KIOSKS for j in range(total)]
    timings: dict[str, float] = {}
    with servers(stack, tmp_path, postgres_url, 2) as (a, b):

        def post(url: str, path: str, body: dict[str, Any], tls: Any) -> httpx.Response:
            return httpx.post(f"{url}{path}", json=body, verify=tls, timeout=SERVER_START)

        # 1. Challenges, half from each server.
        t0 = time.monotonic()
        got = parallel([
            (lambda j=j: post((a, b)[j % 2].url, "/enrollments/challenge",
                              {"kiosk_session": f"k{j}"}, kiosk_tls[kiosk_of[j]]))
            for j in range(total)
        ])  # fmt: skip
        timings["25 challenges (incl. server start)"] = time.monotonic() - t0
        assert [r.status_code for r in got] == [201] * total, [r.text for r in got]
        # 2. The card signs each challenge (one reader: one card session, in turn).
        proofs = []
        with kiosk_client(stack) as client, client.card_session(vpcd_reader(0)) as session:
            session.verify_pin(PIN)
            for j, r in enumerate(got):
                proof = session.authenticate(ORIGIN, base64.b64decode(r.json()["challenge"]))
                proofs.append({
                    "kiosk_session": f"k{j}", "challenge_id": r.json()["challenge_id"],
                    "signature": base64.b64encode(proof.signature).decode(),
                    "certificate": base64.b64encode(proof.certificate).decode(),
                    "origin": ORIGIN,
                })  # fmt: skip
        # 3. Every proof goes to BOTH servers at the same moment (50 requests): the
        # challenge is spent once, so each gets exactly one enrollment.
        t0 = time.monotonic()
        sent = parallel([
            (lambda j=j, s=s: (j, post(s.url, "/enrollments", proofs[j], kiosk_tls[kiosk_of[j]])))
            for j in range(total) for s in (a, b)
        ])  # fmt: skip
        timings["50 enrollments"] = time.monotonic() - t0
        created = {j: r.json() for j, r in sent if r.status_code == 201}
        refused = Counter((r.status_code, r.json().get("error")) for _, r in sent
                          if r.status_code != 201)  # fmt: skip
        assert sorted(created) == list(range(total)), refused
        assert refused == {(403, "challenge_invalid"): total}
        # 4. Each phone redeems its code at BOTH servers at the same moment (50 requests).
        t0 = time.monotonic()
        redeemed = parallel([
            (lambda e=e, s=s: (e["enrollment_id"], post(
                s.url, f"/enrollments/{e['enrollment_id']}/certificate",
                {"csr": make_csr(ec.generate_private_key(ec.SECP256R1())), "code": e["code"]},
                phone_tls)))
            for e in created.values() for s in (a, b)
        ])  # fmt: skip
        timings["50 redemptions"] = time.monotonic() - t0
        wins = Counter(eid for eid, r in redeemed if r.status_code == 201)
        losses = Counter((r.status_code, r.json().get("error")) for _, r in redeemed
                         if r.status_code != 201)  # fmt: skip
        # Exactly the cap is issued, no code twice; the rest is refused, not failed.
        assert len(wins) == KIOSKS and set(wins.values()) == {1}, losses
        allowed = {(409, "code_used"), (429, "code_locked"), (409, "too_many_credentials")}
        assert set(losses) <= allowed and sum(losses.values()) == 2 * total - KIOSKS, losses
        assert losses[(409, "too_many_credentials")] >= EXTRA, losses
        serials = {r.json()["serial"] for _, r in redeemed if r.status_code == 201}
        assert len(serials) == KIOSKS
        # Both servers list the same credentials: 20 issued, 5 still pending.
        fasc_n = next(iter(created.values()))["fasc_n"]
        for server in (a, b):
            listed = httpx.get(f"{server.url}/enrollments", params={"fasc_n": fasc_n},
                               verify=admin_tls, timeout=30).json()["enrollments"]  # fmt: skip
            assert Counter(e["status"] for e in listed) == {"issued": KIOSKS, "pending": EXTRA}
            assert {e["derived_serial"] for e in listed} - {None} == serials
        # 5. Nothing lost: once one credential is revoked (admin, server a), a pending
        # enrollment's code still works (server b).
        first = next(iter(wins))
        revoked = httpx.post(f"{a.url}/enrollments/{first}/revoke", verify=admin_tls, timeout=30)
        assert revoked.json()["status"] == "revoked"
        pending = next(e for e in created.values() if e["enrollment_id"] not in wins)
        body = {"csr": make_csr(ec.generate_private_key(ec.SECP256R1())), "code": pending["code"]}
        late = post(b.url, f"/enrollments/{pending['enrollment_id']}/certificate", body, phone_tls)
        assert late.status_code == 201, late.text
    # The database itself: nothing lost, nothing doubled, every challenge spent once.
    store = Store(postgres_url)
    try:
        rows = store._run("SELECT id, status FROM enrollments").fetchall()
        assert {r[0] for r in rows} == {e["enrollment_id"] for e in created.values()}
        assert Counter(r[1] for r in rows) == {"issued": KIOSKS, "revoked": 1, "pending": EXTRA - 1}
        used = store._run("SELECT COUNT(*) FROM challenges WHERE used = 1").fetchone()
        assert used == (total,)
    finally:
        store.close()
    print(f"\n{KIOSKS} kiosks ({total} enrollments), 2 servers, PostgreSQL: "
          + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))  # fmt: skip
