"""``[pcsc] share_mode``: hwgated beside other smart-card middleware (issue #18 item 2).

OpenSC, which no one here wrote, is the other program. It is shown one reader
only (``ignored_readers``), so its reader index 0 is the card the test inserted:
reader 0 for the module's shared daemon, reader 1 for the exclusive one (so the
two daemons never meet on a card).

- exclusive (the default): OpenSC cannot connect while hwgated runs.
- shared: OpenSC works while hwgated holds no session; while a session holds the
  card, OpenSC waits and runs only after the session ended. The proof is the
  order of the tool's own PC/SC connect (its debug log) and the moment the test
  asked the daemon to close the session, not a sleep.
- shared: another program selecting another application, or resetting the card,
  between hwgated's transactions: the next hwgated job still works, and a PIN
  verified before the reset counts as lost.
- shared: a PIN another program verified and left verified does not serve an
  hwgate session (the session starts with a reset).
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from piv_support import PivDaemon, failure
from smartcard import scard

from hwgate.v1 import card_pb2, piv_pb2
from hwgate_testbed.paths import PIV_PIN, vpcd_reader
from hwgate_testbed.timing import scaled
from support.daemon import start_daemon, write_config
from support.harness import wait_until

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)  # the shared daemon's
R1 = vpcd_reader(1)  # the exclusive daemon's
TOOL_TIMEOUT = 60.0  # seconds (scaled); an OpenSC run takes ~0.1 s when it may run
SELECT_PIV = "00A4040009A00000030800001000"
SELECT_OTHER = "00A4040008A000000151000000"  # a GlobalPlatform card manager's AID
VERIFY_PIN = "0020008008" + (PIV_PIN.encode() + b"\xff" * (8 - len(PIV_PIN))).hex()


def _daemon(directory: Path, reader: str, share_mode: str | None) -> PivDaemon:
    audit = directory / "audit.jsonl"
    pcsc = f'readers = ["{reader}"]\nmax_session_ttl = 60\n'
    if share_mode is not None:
        pcsc += f'share_mode = "{share_mode}"\n'
    config, kiosk, _admin = write_config(directory, pcsc=pcsc, extra=f'[audit]\nfile = "{audit}"')
    return PivDaemon(start_daemon(config, kiosk, directory / "hwgated.log"), audit)


@pytest.fixture(scope="module")
def shared(testbed: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PivDaemon]:
    """One shared-mode daemon for the module, on reader 0 only."""
    daemon = _daemon(tmp_path_factory.mktemp("shared"), R0, "shared")
    yield daemon
    daemon.stop()


def _opensc_env(directory: Path, reader: str = R0, *, debug: bool = False) -> dict[str, str]:
    """An environment that shows OpenSC *reader* only and caches nothing; with
    *debug* it logs to ``opensc-debug.txt`` beside its config (never for a PIN). Not
    ``*.log``: the end-of-session secret scan is for hwgated's logs, and OpenSC's own
    trace of the card's answers can hold six digits in a row by chance."""
    conf = directory / ("opensc-debug.conf" if debug else "opensc.conf")
    log = f'  debug = 3;\n  debug_file = "{directory / "opensc-debug.txt"}";\n' if debug else ""
    conf.write_text(
        "app default {\n"
        f"{log}"
        f'  ignored_readers = "{R1 if reader == R0 else R0}";\n'
        "  framework pkcs15 { use_file_caching = no; }\n"
        "}\n"
    )
    return {**os.environ, "OPENSC_CONF": str(conf)}


@pytest.fixture
def opensc(tmp_path: Path) -> dict[str, str]:
    return _opensc_env(tmp_path)


def _debug_log(env: dict[str, str]) -> Path:
    return Path(env["OPENSC_CONF"]).parent / "opensc-debug.txt"


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=scaled(TOOL_TIMEOUT)
    )


def _list_certificates(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _run(env, "pkcs15-tool", "--list-certificates")


def _apdus(env: dict[str, str], *apdus: str) -> list[str]:
    """Send *apdus* with opensc-tool (one connection); the status words it printed."""
    args = [arg for apdu in apdus for arg in ("-s", apdu)]
    result = _run(env, "opensc-tool", "-r", "0", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return re.findall(r"SW1=0x([0-9A-F]{2}), SW2=0x([0-9A-F]{2})", result.stdout)


def _raw_apdus(reader: str, *apdus: str) -> list[bytes]:
    """Send *apdus* straight through pcscd in one transaction (no OpenSC, whose card
    detection SELECTs other applications and so drops the virtual card's PIN status)."""
    code, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert code == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(code)
    try:
        code, handle, protocol = scard.SCardConnect(
            context, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T1
        )
        assert code == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(code)
        try:
            assert scard.SCardBeginTransaction(handle) == scard.SCARD_S_SUCCESS
            responses = []
            for apdu in apdus:
                code, response = scard.SCardTransmit(handle, protocol, list(bytes.fromhex(apdu)))
                assert code == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(code)
                responses.append(bytes(response))
            scard.SCardEndTransaction(handle, scard.SCARD_LEAVE_CARD)
            return responses
        finally:
            scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
    finally:
        scard.SCardReleaseContext(context)


def _time_of_day(line: str) -> float:
    """The wall-clock time of day of an OpenSC debug line (``HH:MM:SS.mmm``, local)."""
    match = re.search(r" (\d\d):(\d\d):(\d\d)\.(\d{3}) ", line)
    assert match, line
    h, m, s, ms = (int(part) for part in match.groups())
    return h * 3600 + m * 60 + s + ms / 1000


def _seconds_after(later: float, earlier: float) -> float:
    """*later* - *earlier* for times of day, across midnight (runs are far shorter
    than 12 hours)."""
    delta = (later - earlier) % 86400
    return delta if delta < 43200 else delta - 86400


def _local_time_of_day(timestamp: float) -> float:
    moment = datetime.datetime.fromtimestamp(timestamp)
    seconds = moment.hour * 3600 + moment.minute * 60 + moment.second
    return seconds + moment.microsecond // 1000 / 1000  # OpenSC prints milliseconds


def test_exclusive_by_default_keeps_other_programs_out(
    testbed: object, tmp_path: Path, cards: object
) -> None:
    daemon = _daemon(tmp_path, R1, None)  # no share_mode: exclusive, as before
    try:
        cards.insert(1, "bob")  # type: ignore[attr-defined]
        assert daemon.info(reader=R1).chuid.guid  # the daemon holds the card
        result = _list_certificates(_opensc_env(tmp_path, R1))
        assert result.returncode != 0
        assert "Reader in use by another application" in result.stdout + result.stderr
    finally:
        daemon.stop()


def test_shared_opensc_works_beside_an_idle_daemon(
    shared: PivDaemon, cards: object, opensc: dict[str, str]
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    before = shared.info(reader=R0)
    result = _list_certificates(opensc)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Certificate for PIV Authentication" in result.stdout
    # OpenSC probed the card with its own SELECTs; the daemon selects PIV again.
    after = shared.info(reader=R0)
    assert after.chuid.guid == before.chuid.guid
    assert after.pin_retries_left == before.pin_retries_left


def test_shared_opensc_waits_for_a_session(
    shared: PivDaemon, cards: object, tmp_path: Path
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = shared.open_session(R0)
    assert shared.verify(session)
    env = _opensc_env(tmp_path, debug=True)
    debug_log = _debug_log(env)
    tool = subprocess.Popen(
        ["pkcs15-tool", "--list-certificates"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # OpenSC logs "<reader> check" just before its SCardConnect, which waits for us.
        wait_until(
            lambda: debug_log.exists() and f"{R0} check" in debug_log.read_text(),
            scaled(TOOL_TIMEOUT),
            "OpenSC to reach the reader",
        )
        # The session goes on undisturbed: its verified PIN still signs.
        request = piv_pb2.AuthenticateRequest(
            session_id=session, origin="https://kiosk.example", challenge=os.urandom(32)
        )
        assert shared.piv.Authenticate(request, timeout=10).signature
        assert tool.poll() is None
        close_sent = time.time()
        shared.close_session(session)
        output, _ = tool.communicate(timeout=scaled(TOOL_TIMEOUT))
    finally:
        if tool.poll() is None:
            tool.send_signal(signal.SIGKILL)
            tool.wait()
    assert tool.returncode == 0, output
    assert "Certificate for PIV Authentication" in output
    log = debug_log.read_text().splitlines()
    (connected,) = [line for line in log if f"{R0}:SCardConnect(SHARED): 0x00000000" in line]
    assert _seconds_after(_time_of_day(connected), _local_time_of_day(close_sent)) >= 0, (
        "OpenSC got the card before the session was closed"
    )
    # The session's end reset the card: OpenSC's run did not inherit the PIN.
    assert not shared.info(reader=R0).pin_verified


def test_shared_another_program_selecting_elsewhere_between_jobs(
    shared: PivDaemon, cards: object, opensc: dict[str, str]
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    guid = shared.info(reader=R0).chuid.guid
    # The virtual card deselects PIV (and drops its PIN status) on another AID.
    assert _apdus(opensc, SELECT_OTHER)[-1] == ("6A", "82")
    info = shared.info(reader=R0)  # PIN status needs PIV selected: selected again
    assert info.chuid.guid == guid
    assert info.HasField("pin_retries_left")


def test_shared_reset_by_another_program_between_jobs(
    shared: PivDaemon, cards: object, opensc: dict[str, str]
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    assert not shared.info(reader=R0).pin_verified
    # The documented trade-off: a PIN another program verified is visible to the
    # daemon's next job (and the other way round).
    assert _apdus(opensc, SELECT_PIV, VERIFY_PIN)[-1] == ("90", "00")
    assert shared.info(reader=R0).pin_verified

    result = _run(opensc, "opensc-tool", "-r", "0", "--reset", "warm")
    assert result.returncode == 0, result.stdout + result.stderr

    info = shared.info(reader=R0)  # SCARD_W_RESET_CARD: reconnect, select again
    assert info.chuid.guid
    assert not info.pin_verified
    log = shared.daemon.log.read_text()
    assert f"{R0}: another program reset the card; verified PINs are void" in log
    # Sessions work as before.
    session = shared.open_session(R0)
    try:
        assert shared.verify(session)
        info = shared.piv.GetCardInfo(piv_pb2.GetCardInfoRequest(session_id=session), timeout=10)
        assert info.pin_verified
    finally:
        shared.card.CloseSession(card_pb2.CloseSessionRequest(session_id=session), timeout=10)


def test_shared_a_session_never_rides_on_another_programs_pin(
    shared: PivDaemon, cards: object, opensc: dict[str, str]
) -> None:
    cards.insert(0, "bob", "rsa")  # type: ignore[attr-defined]
    assert _apdus(opensc, SELECT_PIV, VERIFY_PIN)[-1] == ("90", "00")
    assert shared.info(reader=R0).pin_verified  # one-shot jobs see it (documented)
    session = shared.open_session(R0)
    try:
        info = shared.piv.GetCardInfo(piv_pb2.GetCardInfoRequest(session_id=session), timeout=10)
        assert not info.pin_verified
        # 9D is "PIN once": only the card decides, and it has no PIN status now.
        request = piv_pb2.PivServiceSignRequest(
            session_id=session,
            slot="SLOT_KEY_MANAGEMENT",
            digest=bytes(32),
            algorithm="SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256",
        )
        code, reason, _ = failure(lambda: shared.piv.Sign(request, timeout=10))
        assert (code.name, reason) == ("FAILED_PRECONDITION", "PIN_REQUIRED")
    finally:
        shared.close_session(session)


def test_shared_shutdown_leaves_no_session_pin_behind(
    testbed: object, tmp_path: Path, cards: object
) -> None:
    daemon = _daemon(tmp_path, R1, "shared")
    try:
        cards.insert(1, "alice")  # type: ignore[attr-defined]
        session = daemon.open_session(R1)
        assert daemon.verify(session)
        daemon.channel.close()
        assert daemon.daemon.stop(signal.SIGTERM) == 0  # the session still open
    finally:
        daemon.stop()
    # The other programs that waited get a card without the session's PIN status.
    status = _raw_apdus(R1, SELECT_PIV, "00200080")[-1]
    assert status[0] == 0x63, status.hex()
