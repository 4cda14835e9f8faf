"""A PKCS#11 module's own output reaches the daemon's log under the token's name.

Before: a worker's fds 1 and 2 were the daemon's, so a module's chatter went
to the journal as bare text from "python3[pid]", with nothing saying which token
or worker wrote it. Now each line is a ``hwgated.hsm.module`` record with the
token name (journal field HWGATE_TOKEN) and the worker's pid.

The chatty module is real: OpenSC's pkcs11-spy (Debian ``opensc-pkcs11``) in
front of SoftHSM, which traces every PKCS#11 call to stderr.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hsm_support import MODULE, HsmTestToken

from hwgated.hsm import HsmPool
from hwgated.hsm import output as module_output
from hwgated.hsm.output import WorkerOutput, syslog_ident
from hwgated.logsetup import journal_fields

SPY = Path("/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so")
LOGGER = "hwgated.hsm.module"


def _module_lines(caplog: pytest.LogCaptureFixture, needle: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and needle in r.getMessage()]


@pytest.mark.skipif(not SPY.exists(), reason="OpenSC's pkcs11-spy is not installed")
def test_a_chatty_module_is_logged_under_its_token(
    own_pool: Callable[..., HsmPool], token: HsmTestToken, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    env = {**token.config.env, "PKCS11SPY": MODULE}
    pool = own_pool(name="spied", module=str(SPY), env=env, workers=1)
    assert pool.healthy
    deadline = time.monotonic() + 30
    while not _module_lines(caplog, "C_Initialize") and time.monotonic() < deadline:
        time.sleep(0.05)  # the daemon's log is what is waited on, with a deadline
    (pid,) = pool.worker_pids()
    banner = _module_lines(caplog, "OpenSC PKCS#11 spy")
    assert banner, [r.getMessage() for r in caplog.records][:20]
    assert banner[0].getMessage().startswith(f"hsm spied worker 0 (pid {pid}): ")
    assert _module_lines(caplog, "C_Initialize"), "each line, as the module wrote it"
    assert journal_fields(banner[0]) == {"HWGATE_TOKEN": "spied"}


def test_lines_are_split_capped_and_flushed_at_eof(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module_output, "LINES_PER_WINDOW", 3)
    monkeypatch.setattr(module_output, "WINDOW", 3600.0)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    out = WorkerOutput("issuing", "issuing/1")
    out.pid = 42
    out.data_received(b"first li")
    out.data_received(b"ne\r\n\n" + b"x" * 5000 + b"\nthird\nfourth\nfifth\nlast, no newline")
    out.connection_lost(None)
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert messages[0] == "hsm issuing worker 1 (pid 42): first line"
    assert len(messages[1]) < module_output.MAX_LINE_CHARS + 50 and messages[1].endswith("…")
    assert messages[2] == "hsm issuing worker 1 (pid 42): third"
    assert messages[3] == (
        "hsm issuing worker 1 (pid 42): 3 more lines of module output dropped (over 3 lines/s)"
    )
    assert len(messages) == 4


def test_syslog_identifier() -> None:
    assert syslog_ident("issuing") == "hwgated-hsm-issuing"
    assert syslog_ident("a b:c[1]") == "hwgated-hsm-a_b_c_1_"
