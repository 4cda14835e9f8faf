"""The APDU trace's formatting: lengths per ISO 7816 case, and no secret ever shown."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwgated.logsetup import TRACE
from hwgated.pcsc import trace


@pytest.mark.parametrize(
    ("apdu", "expected"),
    [
        ("00A40400", (None, None, 4)),  # case 1
        ("00C0000010", (None, 16, 4)),  # case 2 short
        ("00C0000000", (None, 256, 4)),
        ("00DB3FFF03010203", (3, None, 5)),  # case 3 short
        ("00A4040002AABB00", (2, 256, 5)),  # case 4 short
        ("00C00000000100", (None, 256, 4)),  # case 2 extended
        ("00DB3FFF000002AABB", (2, None, 7)),  # case 3 extended
        ("00DB3FFF000002AABB0000", (2, 65536, 7)),  # case 4 extended
        ("00DB3FFF05AABB", (3, None, 4)),  # malformed: the body length went out
    ],
)
def test_lengths(apdu: str, expected: tuple[int | None, int | None, int]) -> None:
    assert trace.lengths(bytes.fromhex(apdu)) == expected


def test_select_data_is_shown_and_cut() -> None:
    short = bytes.fromhex("00A404000BA00000030800001000010000")
    assert "data=A000000308000010000100" in trace.describe_command(short)
    long = bytes.fromhex("00A4040014") + bytes(range(20)) + b"\x00"
    assert trace.describe_command(long).endswith("data=000102030405060708090A0B0C0D0E0F...")


@pytest.mark.parametrize("ins", [0x20, 0x24, 0x2C])
def test_pin_commands_are_redacted(ins: int) -> None:
    pin_block = b"123456\xff\xff" + (b"87654321" if ins != 0x20 else b"")
    apdu = bytes([0x00, ins, 0x00, 0x80, len(pin_block)]) + pin_block
    line = trace.describe_command(apdu)
    assert line == f"00 {ins:02X} 00 80 Lc={len(pin_block)} data=<redacted>"


@given(
    cla=st.integers(0, 255),
    ins=st.integers(0, 255),
    secret=st.binary(min_size=4, max_size=300),
    le=st.sampled_from([b"", b"\x00"]),
)
def test_no_data_but_select_and_get_data_is_ever_shown(
    cla: int, ins: int, secret: bytes, le: bytes
) -> None:
    body = (
        bytes([len(secret)]) + secret
        if len(secret) < 256
        else b"\x00" + len(secret).to_bytes(2, "big") + secret
    )
    apdu = bytes([cla, ins, 0x12, 0x34]) + body + (le * (2 if len(secret) >= 256 else 1))
    line = trace.describe_command(apdu)
    if ins not in trace.SHOWN_INS:
        assert secret.hex().upper() not in line and "data=" not in line.replace(
            "data=<redacted>", ""
        )
    response = trace.describe_response(secret + b"\x90\x00")
    assert response == f"{len(secret)} bytes SW=9000"


def test_trace_is_below_debug(caplog: pytest.LogCaptureFixture) -> None:
    assert TRACE < logging.DEBUG and logging.getLevelName(TRACE) == "TRACE"
    with caplog.at_level(logging.DEBUG, logger="hwgated.pcsc.trace"):
        assert not trace.enabled()
    with caplog.at_level(TRACE, logger="hwgated.pcsc.trace"):
        assert trace.enabled()
        trace.exchange("R", bytes.fromhex("0020008008313233343536FFFF"), b"\x63\xc2", 0.0012)
    (record,) = caplog.records
    assert record.getMessage() == "R: 00 20 00 80 Lc=8 data=<redacted> -> 0 bytes SW=63C2 (1.2 ms)"
    assert record.levelname == "TRACE" and record.hwgate_reader == "R"  # type: ignore[attr-defined]
