"""Certificate fields as people compare them: serial numbers the way OpenSSL prints them.

``format(serial, "x")`` drops a leading zero nibble (``a1b2c`` for 0x0A1B2C), so a
serial copied from hwgate does not match what ``openssl x509 -serial``, OpenSC or
a CA's database show, and a byte-wise compare fails. :func:`serial_hex` always
gives whole bytes, upper case, with a ``-`` for the (invalid but existing)
negative serials, as OpenSSL's ``BN_bn2hex`` does.
"""

from __future__ import annotations


def serial_hex(serial: int | bytes) -> str:
    """Even-length upper-case hex of a certificate serial number.

    *serial* is the number itself (``x509.Certificate.serial_number``) or the
    DER INTEGER's content octets as the API returns them
    (``CertificateSummary.serial_number``: big-endian two's complement, a leading
    00 kept when the high bit is set). Both give the same text, e.g. ``0A1B2C``
    and, for ``00 80 01``, ``8001``.
    """
    value = int.from_bytes(serial, "big", signed=True) if isinstance(serial, bytes) else serial
    sign, magnitude = ("-", -value) if value < 0 else ("", value)
    digits = f"{magnitude:X}"
    return sign + ("0" * (len(digits) % 2)) + digits
