"""MemoryDenyWriteExecute=yes in the unit is safe: the whole daemon (gRPC, pyscard,
PIV identity reads, HSM worker processes with python-pkcs11 + SoftHSM2, metrics)
runs under the kernel's own W^X lock, prctl(PR_SET_MDWE), which is what systemd's
setting amounts to and which children inherit across fork and exec."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from collections.abc import Callable

import pytest
from opsbed import OpsDaemon

from hwgate.v1 import card_pb2, card_pb2_grpc, hsm_pb2, hsm_pb2_grpc
from hwgate_testbed.paths import SOFTHSM_MODULE, TOKEN_LABEL

PR_SET_MDWE = 65
PR_GET_MDWE = 66
PR_MDWE_REFUSE_EXEC_GAIN = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _mdwe_supported() -> bool:
    return bool(_libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) >= 0)


# Sets the lock, then execs its arguments (which inherit it). Not a preexec_fn: a
# fork of the multi-threaded pytest worker (grpc threads) that runs Python before
# exec can deadlock in the child, and a stress run did (the daemon never started).
LOCK_WX_THEN_EXEC = (
    sys.executable, "-c",
    "import ctypes, os, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    f"if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:\n"
    "    sys.exit(f'prctl(PR_SET_MDWE): errno {ctypes.get_errno()}')\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n",
)  # fmt: skip


@pytest.mark.skipif(not _mdwe_supported(), reason="kernel without PR_SET_MDWE (< 6.3)")
def test_daemon_works_without_writable_executable_memory(
    start_ops_daemon: Callable[..., OpsDaemon], testbed: object, cards: object
) -> None:
    paths = testbed.paths  # type: ignore[attr-defined]
    token = (
        f'[[hsm.token]]\nname = "testbed"\nmodule = "{SOFTHSM_MODULE}"\n'
        f'token_label = "{TOKEN_LABEL}"\npin_file = "{paths.user_pin}"\nworkers = 1\n'
        f"env = {{ SOFTHSM2_CONF = {json.dumps(str(paths.softhsm_conf))} }}\n"
    )
    daemon = start_ops_daemon(
        watchdog_usec=None, metrics=True, launcher=LOCK_WX_THEN_EXEC, extra=token
    )
    daemon.notify.wait_line("STATUS=pcscd up; 2 readers, 0 cards; hsm testbed READY")
    cards.insert(0)  # type: ignore[attr-defined]
    admin = daemon.channel(admin=True)
    reply = card_pb2_grpc.CardServiceStub(admin).ListReaders(
        card_pb2.ListReadersRequest(), timeout=10
    )
    assert any(r.HasField("card") for r in reply.readers), reply
    hsm_pb2_grpc.HsmServiceStub(admin).ListKeys(hsm_pb2.ListKeysRequest(), timeout=10)
    assert daemon.proc.poll() is None, daemon.log_text()
    assert "Traceback" not in daemon.log_text()


@pytest.mark.skipif(not _mdwe_supported(), reason="kernel without PR_SET_MDWE (< 6.3)")
def test_the_lock_does_refuse_writable_executable_memory() -> None:
    """The control: under the same lock, a W+X mapping fails (so the test above means it)."""
    probe = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)"
    result = subprocess.run(
        [*LOCK_WX_THEN_EXEC, sys.executable, "-c", probe], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "Permission denied" in result.stderr or "PermissionError" in result.stderr
