"""The `hwgate` wheel alone: a client machine needs no card or HSM libraries.

Installed from the built wheel into a fresh venv (no system site-packages, no
checkout on sys.path), the CLI and the library must work while pyscard and
python-pkcs11 are absent: a stray import of the daemon or of a hardware library
in hwgate fails here, and so does a generated stub missing from the wheel.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from wheel_support import HARDWARE_DISTRIBUTIONS, Wheelhouse, fresh_venv, install, installed
from wheel_support import run_checked as run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PROBE = """
import importlib.util, json, sys
import hwgate, hwgate.aio, hwgate.cli.main
from hwgate.v1 import card_pb2_grpc, error_pb2, hsm_pb2_grpc, piv_pb2_grpc
print(json.dumps({
    "file": hwgate.__file__,
    "absent": [m for m in ("smartcard", "pkcs11", "hwgated", "hwgate_testbed")
               if importlib.util.find_spec(m) is None],
    "reasons": len(error_pb2.ErrorReason.keys()),
}))
"""


def test_client_wheel_installs_and_runs_without_hardware_libraries(
    wheelhouse: Wheelhouse, tmp_path: Path
) -> None:
    python = fresh_venv(tmp_path / "venv")
    install(python, wheelhouse, "hwgate")

    names = installed(python)
    assert "hwgate" in names
    assert not names & (HARDWARE_DISTRIBUTIONS | {"hwgated", "hwgate-testbed", "hwgate-apps"})

    usage = run([python.parent / "hwgate", "--help"], cwd=tmp_path).stdout
    assert usage.startswith("usage: hwgate")
    assert "health" in usage

    probe = json.loads(run([python, "-c", PROBE], cwd=tmp_path).stdout)
    assert Path(probe["file"]).is_relative_to(tmp_path / "venv"), probe["file"]
    assert probe["absent"] == ["smartcard", "pkcs11", "hwgated", "hwgate_testbed"]
    assert probe["reasons"] > 1


def test_wheels_carry_their_package_data(wheelhouse: Wheelhouse) -> None:
    """py.typed, the stubs' .pyi files and the kiosk page are in the wheels (the
    editable install reads them from the checkout, so only a wheel shows a gap)."""

    def names(dist: str) -> set[str]:
        (wheel,) = wheelhouse.ours.glob(f"{dist}-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            return set(zf.namelist())

    client = names("hwgate")
    assert {"hwgate/py.typed", "hwgate/v1/py.typed", "hwgate/v1/piv_pb2.pyi"} <= client
    assert not any(n.startswith(("hwgated/", "hwgate_apps/", "hwgate_testbed/")) for n in client)
    daemon = names("hwgated")
    assert {"hwgated/py.typed", "hwgated/pcsc/__init__.py", "hwgated/pcsc/manager.py"} <= daemon
    assert not any(n.startswith("hwgate/") for n in daemon)  # the stubs come from hwgate
    assert "hwgate_testbed/py.typed" in names("hwgate_testbed")
    assert "hwgate_apps/kiosk/page.html" in names("hwgate_apps")
