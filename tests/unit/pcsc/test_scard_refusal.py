"""pcsc-lite 2.x's polkit refusal is told apart from a pcscd that is down.

Debian 13's pcscd answers a client polkit refuses with SCARD_W_SECURITY_VIOLATION
from SCardEstablishContext (measured in tests/systemd/test_polkit_debian13.py,
which also checks the daemon's log line); the monitor then logs what to do.
"""

from __future__ import annotations

import pytest
from smartcard import scard as pyscard

from hwgated.pcsc import scard


def test_security_violation_at_establish_is_access_refused() -> None:
    with pytest.raises(scard.AccessRefused) as info:
        scard.check("SCardEstablishContext", pyscard.SCARD_W_SECURITY_VIOLATION)
    assert info.value.code == 0x8010006A
    assert "0x8010006A" in str(info.value)


def test_a_pcscd_that_is_down_is_still_service_unavailable() -> None:
    with pytest.raises(scard.ServiceUnavailable):
        scard.check("SCardEstablishContext", pyscard.SCARD_E_NO_SERVICE)


def test_at_connect_it_stays_a_plain_pc_sc_error() -> None:
    with pytest.raises(scard.PcscError) as info:
        scard.check("SCardConnect", pyscard.SCARD_W_SECURITY_VIOLATION, connecting=True)
    assert not isinstance(info.value, scard.AccessRefused)
