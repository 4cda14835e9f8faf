"""Serial numbers print as OpenSSL prints them: whole bytes, upper case."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from hwgate.certfmt import serial_hex

KEY = ec.generate_private_key(ec.SECP256R1())


def _der_content(value: int) -> bytes:
    """A DER INTEGER's content octets (minimal two's complement), as the API sends them."""
    length = (value.bit_length() + 8) // 8
    return value.to_bytes(length, "big", signed=True)


def _openssl_serial(serial: int) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder(name, name, KEY.public_key(), serial, now, now + dt.timedelta(1))
        .sign(KEY, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-serial"], input=cert, capture_output=True, check=True
    )
    return out.stdout.decode().strip().removeprefix("serial=")


@pytest.mark.parametrize(
    ("serial", "text"),
    [
        (0x0A1B2C, "0A1B2C"),
        (0xA1B2C, "0A1B2C"),
        (1, "01"),
        (0x80, "80"),
        (0x0123456789, "0123456789"),
    ],
)
def test_even_length_upper_case(serial: int, text: str) -> None:
    assert serial_hex(serial) == text
    assert serial_hex(_der_content(serial)) == text  # same from the API's bytes


def test_matches_openssl_on_real_certificates() -> None:
    for serial in (0x0A1B2C, 0xFF, 0x80_00, 0x0F << 152 | 0x1234, x509.random_serial_number()):
        assert serial_hex(serial) == _openssl_serial(serial)


def test_negative_serial() -> None:
    assert serial_hex(-0x0A) == "-0A"
    assert serial_hex(b"\xff") == "-01"


@given(st.integers(min_value=0, max_value=2**160 - 1))
def test_round_trips_and_is_even(serial: int) -> None:
    text = serial_hex(serial)
    assert len(text) % 2 == 0 and text == text.upper()
    assert int(text, 16) == serial
    assert serial_hex(_der_content(serial)) == text
