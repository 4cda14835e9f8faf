"""hwgated.service under a real systemd (252 on Debian 12, 257 on Debian 13),
installed by the steps of docs/install.md.

One container per Debian release per session (the ``machine`` fixture of
conftest.py: ``systemd_container.booted``, then the ``bash`` blocks of
docs/install.md, in order, from a directory holding ``dist/`` and
``systemd/``); then each test checks one promise of the unit from outside, by
the container's own view (systemctl show, journalctl, a client as a given
user). Every test starts from a running daemon and leaves one running.
"""

from __future__ import annotations

import json
import re

import pytest
from systemd_container import Container

pytestmark = pytest.mark.systemd

UNIT = "hwgated.service"
VENV = "/opt/hwgate/venv"
KIOSK = "unix:///run/hwgate/hwgate.sock"
ADMIN = "unix:///run/hwgate/admin.sock"
WATCHDOG_SEC = 10
RESTART_SEC = 2


@pytest.fixture
def hwgated(machine: Container) -> Container:
    """The daemon running (started if a test before left it stopped)."""
    machine.run(["systemctl", "start", UNIT])
    assert machine.show(UNIT, "ActiveState")["ActiveState"] == "active"
    return machine


def hwgate(machine: Container, *args: str, user: str | None = None, addr: str = ADMIN, check=True):  # type: ignore[no-untyped-def]
    return machine.run(
        [f"{VENV}/bin/hwgate", "--addr", addr, *args], user=user, check=check, timeout=60
    )


def journal_json(machine: Container, *match: str) -> list[dict]:  # type: ignore[type-arg]
    out = machine.run(["journalctl", "-q", "-o", "json", "--no-pager", *match]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_start_returns_after_ready_with_status(machine: Container) -> None:
    machine.run(["systemctl", "stop", UNIT])
    machine.run(["systemctl", "start", UNIT], timeout=120)
    # Type=notify: start returned, so READY=1 came; nothing still "activating".
    state = machine.show(UNIT, "ActiveState", "SubState", "StatusText", "Type", "MainPID")
    assert (state["ActiveState"], state["SubState"], state["Type"]) == (
        "active",
        "running",
        "notify",
    ), state
    assert state["StatusText"], f"no STATUS= from the daemon: {state}"
    assert int(state["MainPID"]) > 0


def test_kiosk_group_reaches_the_kiosk_socket_only(hwgated: Container) -> None:
    listing = hwgated.run("stat -c '%U:%G %a' /run/hwgate /run/hwgate/hwgate.sock "
                          "/run/hwgate/admin.sock").stdout.split("\n")  # fmt: skip
    assert listing[:3] == ["hwgate:hwgate-clients 710", "hwgate:hwgate-clients 660",
                           "hwgate:hwgate-clients 600"], listing  # fmt: skip
    health = hwgate(hwgated, "--json", "health", user="kiosk", addr=KIOSK)
    assert json.loads(health.stdout)[""] == "SERVING", health.stdout
    readers = hwgate(hwgated, "readers", user="kiosk", addr=KIOSK)
    assert readers.returncode == 0
    connect = (
        f'{VENV}/bin/python -c "import socket,sys; s=socket.socket(socket.AF_UNIX); '
        's.connect(sys.argv[1])" '
    )
    admin = hwgated.run(connect + "/run/hwgate/admin.sock", user="kiosk", check=False)
    assert admin.returncode != 0 and "PermissionError" in admin.stderr, admin
    # Someone outside hwgate-clients cannot even pass through /run/hwgate.
    outsider = hwgated.run(connect + "/run/hwgate/hwgate.sock", user="outsider", check=False)
    assert outsider.returncode != 0 and "PermissionError" in outsider.stderr, outsider
    # The relay's private directories stay the daemon's.
    private = hwgated.run("ls -d /run/hwgate/.hwgate.sock.d && stat -c '%U %a' "
                          "/run/hwgate/.hwgate.sock.d").stdout.split("\n")  # fmt: skip
    assert private[1] == "hwgate 700", private


def test_hsm_signs_with_the_pin_from_load_credential(hwgated: Container) -> None:
    # systemd's copy of the credential, readable by the daemon's user alone.
    cred = hwgated.run("stat -c '%U %a' /run/credentials/hwgated.service/hsm-pin").stdout
    assert cred.strip() in ("hwgate 400", "root 400", "root 440"), cred
    sign_with_issuing_ca(hwgated)
    assert int(hwgated.run("stat -c %s /tmp/hwgate.sig").stdout) > 8
    # The PIN is nowhere in the daemon's argv or environment, nor in its config.
    pid = hwgated.show(UNIT, "MainPID")["MainPID"]
    pin = hwgated.run("cat /etc/hwgate/hsm-pin").stdout.strip()
    seen = hwgated.run(f"tr '\\0' '\\n' < /proc/{pid}/environ; tr '\\0' ' ' < /proc/{pid}/cmdline; "
                       "cat /etc/hwgate/hwgated.toml").stdout  # fmt: skip
    assert len(pin) >= 16 and pin not in seen


def sign_with_issuing_ca(machine: Container) -> None:
    """An ECDSA signature by the HSM key ``issuing-ca`` (made on first use)."""
    if "issuing-ca" not in hwgate(machine, "keys").stdout:
        hwgate(machine, "keygen", "issuing-ca", "--alg", "ec-p256")
    hwgate(machine, "sign", "issuing-ca", "--alg", "ecdsa-sha256", "--in", "/etc/hostname",
           "--out", "/tmp/hwgate.sig")  # fmt: skip


def test_watchdog_restarts_a_stopped_daemon(hwgated: Container) -> None:
    before = hwgated.show(UNIT, "MainPID", "NRestarts")
    pid = before["MainPID"]
    hwgated.run(["kill", "-STOP", pid])
    after = hwgated.wait_for(
        "the watchdog restart",
        lambda: (
            s
            if (s := hwgated.show(UNIT, "MainPID", "NRestarts", "ActiveState", "SubState"))[
                "MainPID"
            ]
            not in ("0", pid)
            and s["ActiveState"] == "active"
            and s["SubState"] == "running"
            else None
        ),
        timeout=WATCHDOG_SEC + RESTART_SEC + 90,
    )
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, (before, after)
    messages = [e.get("MESSAGE", "") for e in journal_json(hwgated, "-u", UNIT)]
    assert any("Watchdog timeout" in str(m) for m in messages), messages[-20:]


def test_reload_keeps_the_pid_and_applies_a_policy_change(hwgated: Container) -> None:
    pid = hwgated.show(UNIT, "MainPID")["MainPID"]
    assert hwgate(hwgated, "readers", user="kiosk", addr=KIOSK).returncode == 0
    config = "/etc/hwgate/hwgated.toml"
    hwgated.run(f"cp {config} /tmp/hwgated.toml.orig && "
                f"sed -i '/\"hwgate.v1.CardService\\/ListReaders\",/d' {config}")  # fmt: skip
    try:
        hwgated.run(["systemctl", "reload", UNIT])
        hwgated.wait_for(
            "kiosk ListReaders to be denied after the reload",
            lambda: (
                hwgate(hwgated, "readers", user="kiosk", addr=KIOSK, check=False).returncode != 0
            ),
            timeout=30,
        )
        assert hwgated.show(UNIT, "MainPID")["MainPID"] == pid
    finally:
        hwgated.run(f"cp /tmp/hwgated.toml.orig {config} && systemctl reload {UNIT}")
    hwgated.wait_for(
        "kiosk ListReaders allowed again",
        lambda: hwgate(hwgated, "readers", user="kiosk", addr=KIOSK, check=False).returncode == 0,
        timeout=30,
    )
    assert hwgated.show(UNIT, "MainPID")["MainPID"] == pid


def test_stop_is_clean(hwgated: Container) -> None:
    # HSM workers (and so multiprocessing's helpers) are running.
    hwgate(hwgated, "keys")
    invocation = hwgated.show(UNIT, "InvocationID")["InvocationID"]
    hwgated.run(["systemctl", "stop", UNIT], timeout=60)
    state = hwgated.show(UNIT, "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    assert state["ActiveState"] == "inactive" and state["Result"] == "success", state
    assert state["ExecMainStatus"] == "0", state
    # systemd's own messages about this run of the unit, the daemon's, its children's.
    records = journal_json(hwgated, f"INVOCATION_ID={invocation}", "+",
                           f"_SYSTEMD_INVOCATION_ID={invocation}")  # fmt: skip
    messages = [str(e.get("MESSAGE", "")) for e in records]
    assert any(m.startswith("Stopped ") for m in messages), messages
    killed = [m for m in messages if "SIGKILL" in m or "Killing process" in m]
    assert not killed, messages
    assert hwgated.run("test ! -e /run/hwgate", check=False).returncode == 0
    hwgated.run(["systemctl", "start", UNIT])


def test_journal_has_hwgate_fields_and_audit_records(hwgated: Container) -> None:
    sign_with_issuing_ca(hwgated)  # the key exists now: this sign is the only one below
    invocation = hwgated.show(UNIT, "InvocationID")["InvocationID"]
    match = ("SYSLOG_IDENTIFIER=hwgated-audit", f"_SYSTEMD_INVOCATION_ID={invocation}")
    before = len(journal_json(hwgated, *match, "HWGATE_ACTION=hsm.sign"))
    sign_with_issuing_ca(hwgated)
    hwgated.wait_for(
        "the sign's audit record in the journal",
        lambda: len(journal_json(hwgated, *match, "HWGATE_ACTION=hsm.sign")) > before,
        timeout=30,
    )
    audit = journal_json(hwgated, *match)
    assert all(r.get("HWGATE_ACTION") for r in audit), audit
    assert any(r["HWGATE_ACTION"] == "hsm.sign" and r.get("HWGATE_KEY") == "issuing-ca"
               for r in audit), audit  # fmt: skip
    assert any(r.get("HWGATE_ROLE") == "admin" for r in audit), audit
    records = journal_json(hwgated, "-u", UNIT)
    fields = {k for r in records for k in r if k.startswith("HWGATE_")}
    assert fields, "no HWGATE_* field in the unit's journal"


def test_security_exposure_is_at_most_2(hwgated: Container) -> None:
    out = hwgated.run(["systemd-analyze", "security", "--no-pager", UNIT]).stdout
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert match, out
    assert float(match.group(1)) <= 2.0, out
