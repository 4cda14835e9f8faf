"""APDU trace: one log line per command/response at the ``trace`` level (below debug).

A field problem on a real card (a vendor's odd status word, a chaining bug, a
slow card) can then be diagnosed from the daemon's own log, as yubikit's
TRAFFIC level allows. Each line names the reader, the header (CLA INS P1 P2),
the command's Lc and Le, the response's length and status word, and the time
the card took::

    Virtual PCD 00 00: 00 A4 04 00 Lc=11 Le=256 data=A000000308... -> 83 bytes SW=9000 (2.1 ms)

Secrets never reach the log, by construction:

- command data is shown only for instructions that carry nothing secret
  (SELECT's AID, GET DATA's tag list), and cut at :data:`MAX_SHOWN`; for every
  other instruction only its length appears. VERIFY, CHANGE REFERENCE DATA and
  RESET RETRY COUNTER (which carry PINs and PUKs) are marked ``<redacted>``;
- response data is never shown, only its length (it may hold a decrypted key,
  a signature, or personal data).

Formatting costs nothing unless the level is enabled.
"""

from __future__ import annotations

import logging

from hwgated.logsetup import TRACE

log = logging.getLogger("hwgated.pcsc.trace")

INS_VERIFY = 0x20
INS_CHANGE_REFERENCE_DATA = 0x24
INS_RESET_RETRY_COUNTER = 0x2C
SECRET_INS = frozenset({INS_VERIFY, INS_CHANGE_REFERENCE_DATA, INS_RESET_RETRY_COUNTER})
# Command data worth seeing and never secret: SELECT (an AID), GET DATA (a tag list).
SHOWN_INS = frozenset({0xA4, 0xCA, 0xCB})
MAX_SHOWN = 16  # bytes of command data shown at most


def enabled() -> bool:
    return log.isEnabledFor(TRACE)


def lengths(apdu: bytes) -> tuple[int | None, int | None, int]:
    """(Lc, Le, offset of the data) of a command APDU (ISO 7816-3 cases 1-4, short
    and extended); None where the case has no such field. A malformed APDU gives
    its body length as Lc, so the line still says how much went out."""
    body = apdu[4:]
    if not body:
        return None, None, 4  # case 1
    if len(body) == 1:
        return None, body[0] or 256, 4  # case 2 short
    if body[0] == 0 and len(body) >= 3:  # extended
        if len(body) == 3:
            return None, int.from_bytes(body[1:3], "big") or 65536, 4  # case 2E
        lc = int.from_bytes(body[1:3], "big")
        rest = len(body) - 3 - lc
        if lc and rest in (0, 2):
            le = (int.from_bytes(body[-2:], "big") or 65536) if rest == 2 else None
            return lc, le, 7
    lc = body[0]
    rest = len(body) - 1 - lc
    if lc and rest in (0, 1):
        return lc, (body[-1] or 256) if rest == 1 else None, 5
    return len(body), None, 4  # not a well-formed APDU: report what went out


def describe_command(apdu: bytes) -> str:
    """Header, lengths and (only where harmless) data of *apdu*; never a secret."""
    if len(apdu) < 4:
        return f"malformed APDU ({len(apdu)} bytes)"
    header = apdu[:4].hex(" ").upper()
    lc, le, offset = lengths(apdu)
    parts = [header]
    if lc is not None:
        parts.append(f"Lc={lc}")
    if le is not None:
        parts.append(f"Le={le}")
    ins = apdu[1]
    if lc:
        if ins in SECRET_INS:
            parts.append("data=<redacted>")
        elif ins in SHOWN_INS:
            data = apdu[offset : offset + min(lc, MAX_SHOWN)]
            parts.append(f"data={data.hex().upper()}{'...' if lc > MAX_SHOWN else ''}")
    return " ".join(parts)


def describe_response(response: bytes) -> str:
    """Length and status word of *response*; its data is never shown."""
    if len(response) < 2:
        return f"malformed response ({len(response)} bytes)"
    return f"{len(response) - 2} bytes SW={response[-2:].hex().upper()}"


def exchange(reader: str, apdu: bytes, response: bytes, seconds: float) -> None:
    """Log one command/response pair (the caller checked :func:`enabled`)."""
    log.log(
        TRACE,
        "%s: %s -> %s (%.1f ms)",
        reader,
        describe_command(apdu),
        describe_response(response),
        seconds * 1000,
        extra={"hwgate_reader": reader},
    )


def failed(reader: str, apdu: bytes, error: BaseException, seconds: float) -> None:
    """Log a command the card or pcscd did not answer."""
    log.log(
        TRACE,
        "%s: %s -> no response: %s (%.1f ms)",
        reader,
        describe_command(apdu),
        type(error).__name__,
        seconds * 1000,
        extra={"hwgate_reader": reader},
    )


def reset(reader: str, seconds: float) -> None:
    log.log(
        TRACE, "%s: card reset (%.1f ms)", reader, seconds * 1000, extra={"hwgate_reader": reader}
    )
