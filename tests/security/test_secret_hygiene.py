"""Objects that hold a PIN or a secret never show it in repr()/str(), and the log scan works.

A repr ends up in logs, tracebacks and debugger output without anyone deciding
to log a secret, so it is the one place the secret must never appear.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

from hwgated.hsm.types import DerivedKey
from hwgated.piv import commands
from hwgated.piv.pinbuffer import PinBuffer
from support import logscan

PIN = b"123456"


def shows(obj: object, secret: bytes) -> bool:
    """Whether any common rendering of *secret* appears in repr/str of *obj*."""
    text = repr(obj) + str(obj)
    forms = {secret.decode("latin-1"), secret.hex(), secret.hex().upper(), repr(secret)}
    forms |= {", ".join(str(b) for b in secret)}  # a list-of-ints rendering
    return any(form in text for form in forms)


def test_pin_buffer_repr_hides_the_pin() -> None:
    pin = PinBuffer(PIN)
    assert not shows(pin, PIN)
    assert "redacted" in repr(pin)
    claimed = pin.claim()
    assert claimed == bytearray(PIN)
    pin.wipe()
    assert claimed == bytearray(len(PIN)) and pin.wiped


def test_derived_key_repr_hides_the_value() -> None:
    secret = bytes(range(0x41, 0x41 + 16))
    key = DerivedKey(ref=None, key_length=16, value=bytearray(secret))
    assert not shows(key, secret)
    assert "hidden" in repr(key)
    key.wipe()
    assert key.value == bytearray(16)


def test_verify_command_repr_hides_the_pin() -> None:
    cmd = commands.verify_pin(bytearray(PIN))
    assert not shows(cmd, PIN)


def test_scan_finds_text_hex_and_base64_forms(tmp_path: Path) -> None:
    log = tmp_path / "planted.txt"  # not a log name: the session-end scan skips it
    log.write_text(
        "ok line 1234567 0x123456a\n"  # longer numbers do not match
        "VERIFY 0020008008313233343536FFFF\n"
        "pin=123456\n" + f'{{"pin": "{base64.b64encode(PIN).decode()}"}}\n'
    )
    findings = logscan.scan_files([log], [PIN])
    assert [(f.line, f.form) for f in findings] == [(2, "hex"), (3, "text"), (4, "base64")]


def test_scan_collects_logs_but_not_test_bed_internals(tmp_path: Path) -> None:
    bed = tmp_path / "testbed"
    (bed / "slots").mkdir(parents=True)
    (bed / "token-user.pin").write_text("87654321\n")
    (bed / "slots" / "slot0.log").write_text("VERIFY 123456\n")  # the card's own debug log
    daemon_dir = tmp_path / "test_x0"
    daemon_dir.mkdir()
    (daemon_dir / "hwgated.log").write_text("token login with 87654321\n")
    (daemon_dir / "audit.jsonl").write_text('{"action": "piv.verify_pin"}\n')
    try:
        files = {f for f in logscan.candidate_logs(tmp_path) if f.is_relative_to(tmp_path)}
        assert files == {daemon_dir / "hwgated.log", daemon_dir / "audit.jsonl"}
        assert logscan.token_pins(tmp_path) == {b"87654321"}
        findings = logscan.scan_files(files, [*logscan.KNOWN_PINS, b"87654321"])
        assert [(f.file.name, f.form) for f in findings] == [("hwgated.log", "text")]
    finally:
        shutil.rmtree(tmp_path)  # planted evidence must not fail the session-end scan


def test_scan_looks_for_the_escrowed_keys(tmp_path: Path) -> None:
    """The bed's escrowed key-management keys (DIR/escrow/*.json names the card) are
    secrets of the session-end scan: PKCS#8 DER and private numbers, in every form."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    bed = tmp_path / "bed"
    (bed / "escrow").mkdir(parents=True)
    (bed / "cards" / "carol").mkdir(parents=True)
    (bed / "token-user.pin").write_text("87654321\n")
    (bed / "escrow" / "guid.json").write_text('{"card": "carol"}')
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (bed / "cards" / "carol" / "slot-9d.key.pem").write_bytes(pem)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    planted = tmp_path / "planted.txt"
    planted.write_text(
        f"recovered {scalar.hex()}\nder {base64.b64encode(der).decode()}\nclean line\n"
    )
    try:
        secrets = logscan.escrowed_keys(tmp_path)
        assert {scalar, der} <= secrets
        findings = logscan.scan_files([planted], secrets)
        assert sorted({(f.line, f.form) for f in findings}) == [(1, "hex"), (2, "base64")]
    finally:
        shutil.rmtree(tmp_path)  # planted evidence must not fail the session-end scan
