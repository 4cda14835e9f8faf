"""Client tests: one shared hwgated per module on the test bed (see clients_support)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from clients_support import Gateway, start_gateway


@pytest.fixture(scope="module")
def gateway(testbed: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A daemon with kiosk/admin sockets, mTLS on a free port, and the SoftHSM token."""
    gw = start_gateway(tmp_path_factory.mktemp("gw"), testbed)
    yield gw
    gw.proc.stop(signal.SIGKILL)


@pytest.fixture(params=["unix", "mtls"])
def conn(request: pytest.FixtureRequest, gateway: Gateway) -> list[str]:
    """The admin's connection options: the admin Unix socket, or mTLS with admin.pem/.key
    from the test bed's PKI (every verb must work both ways: --key is the TLS key)."""
    if request.param == "unix":
        return ["--addr", gateway.admin]
    return ["--addr", gateway.tcp, *gateway.tls_args("admin")]
