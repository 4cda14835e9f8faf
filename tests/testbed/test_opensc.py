"""OpenSC, which no one here wrote, reads and uses the virtual PIV card through real pcscd.

Each test inserts a freshly started card process on vpcd port 35964 (reader
"Virtual PCD 00 01"); OpenSC is pointed at that reader only (``ignored_readers``)
so it never touches the card another engineer serves in "Virtual PCD 00 00".
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from smartcard import scard

from hwgate_testbed.vcard import ATR, CardProfile, PivCa, Slot, ensure_piv_ca, provision_card

pytestmark = pytest.mark.testbed

READER = "Virtual PCD 00 01"
OTHER_READER = "Virtual PCD 00 00"
PORT = 35964
PKCS11_MODULE = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
PIN = "123456"
SLOT_IDS = {Slot.AUTHENTICATION: "01", Slot.SIGNATURE: "02", Slot.KEY_MANAGEMENT: "03",
            Slot.CARD_AUTH: "04"}  # fmt: skip
INSERT_DEADLINE = 10.0


# -- PC/SC helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pcsc() -> Iterator[int]:
    """A PC/SC context; the module is skipped when pcscd or our reader is missing."""
    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hr != scard.SCARD_S_SUCCESS:
        pytest.skip(f"pcscd not reachable: {scard.SCardGetErrorMessage(hr)}")
    hr, readers = scard.SCardListReaders(ctx, [])
    if hr != scard.SCARD_S_SUCCESS or READER not in readers:
        scard.SCardReleaseContext(ctx)
        pytest.skip(f"reader {READER!r} not present")
    yield ctx
    scard.SCardReleaseContext(ctx)


def wait_for_card(ctx: int, present: bool, deadline: float) -> bytes:
    """Block in SCardGetStatusChange until the reader shows (no) card; returns the ATR."""
    states = [(READER, scard.SCARD_STATE_UNAWARE)]
    while True:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            raise TimeoutError(f"card {'insert' if present else 'removal'} not seen in {READER}")
        hr, new_states = scard.SCardGetStatusChange(ctx, min(remaining_ms, 1000), states)
        if hr == scard.SCARD_E_TIMEOUT:
            continue
        assert hr == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hr)
        _, event, atr = new_states[0]
        is_present = bool(event & scard.SCARD_STATE_PRESENT)
        if is_present == present and not event & scard.SCARD_STATE_MUTE:
            return bytes(atr)
        states = [(READER, event & ~scard.SCARD_STATE_CHANGED)]


@contextmanager
def inserted(
    ctx: int, card_dir: Path, log_path: Path, debug: bool = True
) -> Iterator[subprocess.Popen[bytes]]:
    """Start the card process (= insert), wait for pcscd to see it; stop it after (= remove).

    With *debug* the card logs every APDU (PINs redacted) to *log_path* for post-mortems.
    """
    wait_for_card(ctx, present=False, deadline=time.monotonic() + INSERT_DEADLINE)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hwgate_testbed.vcard", "--card-dir", str(card_dir),
             "--port", str(PORT), *(["--debug"] if debug else [])],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        atr = wait_for_card(ctx, present=True, deadline=time.monotonic() + INSERT_DEADLINE)
        assert atr == ATR
        assert_our_card(ctx, CardProfile.load(card_dir))
        yield proc
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        wait_for_card(ctx, present=False, deadline=time.monotonic() + INSERT_DEADLINE)


def wait_for_reader_change(ctx: int, timeout_ms: int) -> None:
    """Block until pcscd reports any change on our reader (e.g. released), or time out."""
    hr, states = scard.SCardGetStatusChange(ctx, 0, [(READER, scard.SCARD_STATE_UNAWARE)])
    assert hr == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hr)
    current = states[0][1] & ~scard.SCARD_STATE_CHANGED
    scard.SCardGetStatusChange(ctx, timeout_ms, [(READER, current)])


@contextmanager
def connected(ctx: int) -> Iterator[tuple[int, int]]:
    """A shared connection to our reader inside a PC/SC transaction.

    Other programs on this machine (a daemon under test watching every reader) may
    hold the card for a moment: connecting is retried on a sharing violation, and
    the transaction keeps their APDUs out of ours.
    """
    deadline = time.monotonic() + INSERT_DEADLINE
    while True:
        hr, handle, protocol = scard.SCardConnect(
            ctx, READER, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T1
        )
        if hr != scard.SCARD_E_SHARING_VIOLATION or time.monotonic() > deadline:
            break
        wait_for_reader_change(ctx, timeout_ms=200)
    assert hr == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hr)
    try:
        hr = scard.SCardBeginTransaction(handle)
        assert hr == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hr)
        yield handle, protocol
        scard.SCardEndTransaction(handle, scard.SCARD_LEAVE_CARD)
    finally:
        scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)


def transmit(ctx: int, apdus: list[bytes]) -> list[bytes]:
    """Send APDUs straight through pcscd (no OpenSC) and return the raw responses."""
    out = []
    with connected(ctx) as (handle, protocol):
        for apdu in apdus:
            hr, resp = scard.SCardTransmit(handle, protocol, list(apdu))
            assert hr == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hr)
            out.append(bytes(resp))
    return out


SELECT_PIV = bytes.fromhex("00A4040009A00000030800001000")
PIN_STATUS = bytes.fromhex("0020008000")


def assert_our_card(ctx: int, profile: CardProfile) -> None:
    """The card in the reader is the one we started, not someone else's on the same port."""
    chuid = transmit(ctx, [SELECT_PIV, bytes.fromhex("00CB3FFF055C035FC10200")])[1]
    assert profile.guid.bytes in chuid, "another card is in " + READER


def pin_status(ctx: int) -> bytes:
    return transmit(ctx, [SELECT_PIV, PIN_STATUS])[1][-2:]


# -- cards and OpenSC --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PivCa:
    return ensure_piv_ca(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory, ca: PivCa) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cards")
    provision_card(root / "rsa", "Oscar Rsa", "rsa", ca)
    provision_card(root / "ecc", "Olga Ecc", "ecc", ca)
    return {"rsa": root / "rsa", "ecc": root / "ecc"}


@pytest.fixture(scope="module")
def opensc_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment that makes OpenSC see only our reader and cache nothing."""
    conf = tmp_path_factory.mktemp("opensc") / "opensc.conf"
    conf.write_text(
        "app default {\n"
        f'  ignored_readers = "{OTHER_READER}";\n'
        "  framework pkcs15 { use_file_caching = no; }\n"
        "}\n"
    )
    return {**os.environ, "OPENSC_CONF": str(conf)}


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def pkcs11_slot(env: dict[str, str]) -> str:
    listing = run(env, "pkcs11-tool", "--module", PKCS11_MODULE, "--list-slots").stdout
    match = re.search(r"^Slot \d+ \((0x[0-9a-f]+)\): " + re.escape(READER), listing, re.M)
    assert match, listing
    return match.group(1)


@pytest.fixture(params=["rsa", "ecc"])
def card(
    request: pytest.FixtureRequest, pcsc: int, cards: dict[str, Path], tmp_path: Path
) -> Iterator[tuple[CardProfile, Path]]:
    card_dir = cards[request.param]
    with inserted(pcsc, card_dir, tmp_path / "card.log"):
        yield CardProfile.load(card_dir), tmp_path


# -- tests --------------------------------------------------------------------------------


def test_pkcs15_lists_and_reads_certificates(
    card: tuple[CardProfile, Path], opensc_env: dict[str, str]
) -> None:
    profile, _ = card
    listing = run(opensc_env, "pkcs15-tool", "--reader", READER, "--list-certificates").stdout
    for label in ("PIV Authentication", "Digital Signature", "Key Management",
                  "Card Authentication"):  # fmt: skip
        assert f"Certificate for {label}" in listing
    for slot, cert_id in SLOT_IDS.items():
        pem = run(opensc_env, "pkcs15-tool", "--reader", READER, "--read-certificate", cert_id)
        cert = x509.load_pem_x509_certificate(pem.stdout.encode())
        assert cert == profile.slots[slot].certificate  # 9D comes gzip'd off the card
        assert profile.name in cert.subject.rfc4514_string()


def test_opensc_sees_a_piv_card(card: tuple[CardProfile, Path], opensc_env: dict[str, str]) -> None:
    profile, _ = card
    name = run(opensc_env, "opensc-tool", "--reader", READER, "--name").stdout
    assert "Personal Identity Verification Card" in name
    mechanisms = run(opensc_env, "pkcs11-tool", "--module", PKCS11_MODULE, "-M").stdout
    assert (
        ("ECDSA-SHA256" in mechanisms)
        if profile.key_type == "ecc"
        else ("SHA256-RSA-PKCS" in mechanisms)
    )
    slots = run(opensc_env, "pkcs11-tool", "--module", PKCS11_MODULE, "-L").stdout
    assert f"token label        : {profile.name}" in slots


@pytest.mark.parametrize("slot", [Slot.AUTHENTICATION, Slot.SIGNATURE])
def test_pkcs11_sign_verifies(
    card: tuple[CardProfile, Path], opensc_env: dict[str, str], slot: Slot
) -> None:
    profile, tmp_path = card
    message = tmp_path / "message"
    message.write_bytes(b"proof of possession " + profile.name.encode())
    signature = tmp_path / "signature"
    mechanism = ["-m", "SHA256-RSA-PKCS"]
    if profile.key_type == "ecc":
        mechanism = ["-m", "ECDSA-SHA256", "--signature-format", "openssl"]
    run(
        opensc_env, "pkcs11-tool", "--module", PKCS11_MODULE, "--slot", pkcs11_slot(opensc_env),
        "--login", "--pin", PIN, "--sign", "--id", SLOT_IDS[slot], *mechanism,
        "--input-file", str(message), "--output-file", str(signature),
    )  # fmt: skip
    public = profile.slots[slot].certificate.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(
            signature.read_bytes(), message.read_bytes(), padding.PKCS1v15(), hashes.SHA256()
        )
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature.read_bytes(), message.read_bytes(), ec.ECDSA(hashes.SHA256()))


def test_wrong_pins_count_down_and_block(
    pcsc: int, cards: dict[str, Path], opensc_env: dict[str, str], tmp_path: Path
) -> None:
    with inserted(pcsc, cards["ecc"], tmp_path / "card.log"):
        slot = pkcs11_slot(opensc_env)
        login = ["pkcs11-tool", "--module", PKCS11_MODULE, "--slot", slot, "--login",
                 "--list-objects", "--pin"]  # fmt: skip
        assert pin_status(pcsc) == b"\x63\xc3"
        statuses = []
        for _ in range(3):
            result = run(opensc_env, *login, "999999", check=False)
            assert result.returncode != 0
            assert "CKR_PIN_INCORRECT" in result.stderr + result.stdout
            statuses.append(pin_status(pcsc))
        assert statuses == [b"\x63\xc2", b"\x63\xc1", b"\x69\x83"]
        result = run(opensc_env, *login, PIN, check=False)
        assert result.returncode != 0
        assert "CKR_PIN_LOCKED" in result.stderr + result.stdout
    # a fresh insert is a fresh card: the counter comes back from the profile
    with inserted(pcsc, cards["ecc"], tmp_path / "card.log"):
        assert pin_status(pcsc) == b"\x63\xc3"


def test_apdu_round_trip_time(pcsc: int, cards: dict[str, Path], tmp_path: Path) -> None:
    """pcscd + vpcd + this card: one short APDU should take well under a millisecond."""
    apdu = bytes.fromhex("00CB3FFF035C017E00")
    times = []
    with (
        inserted(pcsc, cards["ecc"], tmp_path / "card.log", debug=False),
        connected(pcsc) as (handle, protocol),
    ):
        for _ in range(2000):
            start = time.perf_counter()
            hr, resp = scard.SCardTransmit(handle, protocol, list(apdu))
            times.append(time.perf_counter() - start)
            assert hr == scard.SCARD_S_SUCCESS and bytes(resp[-2:]) == b"\x90\x00"
    median_ms = statistics.median(times) * 1000
    print(f"APDU round trip through pcscd: median {median_ms:.3f} ms over {len(times)}")
    assert median_ms < 5  # ~0.1 ms expected; 44 ms would mean Nagle/delayed-ACK is back
