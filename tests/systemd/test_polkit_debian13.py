"""Debian 13: pcscd asks polkit, and the shipped rule lets hwgated (and only it) in.

pcsc-lite 2.3.3 as Debian 13 builds it checks every client against
org.debian.pcsc-lite.access_pcsc (connect) and access_card (use a card), both
allow_active only; the service user has no session. In the booted container
(polkitd on the container's D-Bus, pcscd socket-activated, the unit and
systemd/50-hwgate-pcscd.rules installed by docs/install.md) a virtual PIV card
sits in vpcd's first reader, and the daemon must reach it; without the rule,
pcscd must refuse it as the install doc says.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import SUITE_VENV
from systemd_container import Container

pytestmark = [pytest.mark.systemd, pytest.mark.debian13]

UNIT = "hwgated.service"
VENV = "/opt/hwgate/venv"
ADMIN = "unix:///run/hwgate/admin.sock"
RULE = "/usr/share/polkit-1/rules.d/50-hwgate-pcscd.rules"
ACTIONS = ("org.debian.pcsc-lite.access_pcsc", "org.debian.pcsc-lite.access_card")
READER = "Virtual PCD 00 00"
REFUSAL = "Rejected unauthorized PC/SC client"
CARD_UNIT = "hwgate-vcard.service"
CARD_DIR = "/var/tmp/hwgate-card"


def pkcheck(machine: Container, user: str, action: str) -> int:
    """polkit's answer for a process of *user* (0: authorized)."""
    command = f"exec pkcheck --action-id {action} --process $$"
    return machine.run(command, user=user, check=False, timeout=60).returncode


def readers(machine: Container) -> dict[str, dict]:  # type: ignore[type-arg]
    """The daemon's readers by name (its own view, through the admin socket)."""
    out = machine.run(
        [f"{VENV}/bin/hwgate", "--addr", ADMIN, "readers", "--json"], check=False, timeout=60
    )
    if out.returncode != 0:
        return {}
    listing = json.loads(out.stdout)  # {"readers": [{"name": ..., "card": {...}}, ...]}
    return {r["name"]: r for r in listing.get("readers", [])}


def pcscd_journal_since(machine: Container, cursor: str) -> str:
    return machine.run(
        ["journalctl", "-q", "--no-pager", "-u", "pcscd", f"--after-cursor={cursor}"]
    ).stdout


def journal_cursor(machine: Container) -> str:
    out = machine.run(["journalctl", "-q", "-n", "0", "--show-cursor", "--no-pager"]).stdout
    return out.strip().rsplit("cursor: ", 1)[-1]


def insert_card(machine: Container) -> None:
    """The card process in vpcd's first reader, unless it runs. It ends when pcscd
    does (vpcd's socket closes), and Debian's pcscd.service runs with
    --auto-exit: a pcscd whose only client was refused soon exits."""
    if machine.run(["systemctl", "is-active", "-q", CARD_UNIT], check=False).returncode == 0:
        return
    machine.run(
        ["systemd-run", f"--unit={CARD_UNIT}", f"{SUITE_VENV}/bin/python", "-m",
         "hwgate_testbed.vcard", "--card-dir", f"{CARD_DIR}/card", "--port", "35963"]
    )  # fmt: skip


@pytest.fixture(scope="module")
def card(suite_venv: Container) -> Iterator[str]:
    """A virtual PIV card (the test bed's, on Python 3.13) in vpcd's first reader."""
    m = suite_venv
    m.run(
        f"{SUITE_VENV}/bin/python -c 'import sys; from pathlib import Path; "
        "from hwgate_testbed.vcard.piv_ca import ensure_piv_ca; "
        "from hwgate_testbed.vcard.provision import provision_card; "
        "d = Path(sys.argv[1]); "
        "provision_card(d / \"card\", \"alice\", \"ecc\", ensure_piv_ca(d / \"pki\"))' "
        f"{CARD_DIR}"
    )  # fmt: skip
    insert_card(m)
    yield READER
    m.run(["systemctl", "stop", CARD_UNIT], check=False)


def daemon_sees_card(machine: Container, reader: str) -> dict | None:  # type: ignore[type-arg]
    entry = readers(machine).get(reader)
    return entry if entry and entry.get("card") else None


def test_the_rule_grants_hwgate_the_two_pcsc_actions_and_nothing_else(machine: Container) -> None:
    assert machine.run(["test", "-f", RULE], check=False).returncode == 0
    for action in ACTIONS:
        assert pkcheck(machine, "hwgate", action) == 0, action
        # Other users, with no session either, keep pcsc-lite's defaults: refused.
        assert pkcheck(machine, "kiosk", action) != 0, action
        assert pkcheck(machine, "outsider", action) != 0, action
    # Another action is not the rule's business: hwgate gets the default (no).
    assert pkcheck(machine, "hwgate", "org.freedesktop.login1.reboot") != 0


def test_the_service_user_reaches_pcscd_and_the_card(machine: Container, card: str) -> None:
    machine.run(["systemctl", "restart", UNIT], timeout=120)
    cursor = journal_cursor(machine)
    insert_card(machine)
    machine.wait_for(
        "the daemon to see the card in the vpcd reader",
        lambda: daemon_sees_card(machine, card),
        timeout=60,
    )
    info = machine.run(
        [f"{VENV}/bin/hwgate", "--addr", ADMIN, "card", "info", "--reader", card, "--json"],
        timeout=60,
    )
    assert "alice" in info.stdout, info.stdout  # read from the card: access_card granted
    assert REFUSAL not in pcscd_journal_since(machine, cursor)


def test_without_the_rule_pcscd_refuses_the_service(machine: Container, card: str) -> None:
    machine.run(f"mv {RULE} /root/rule.saved")
    try:
        # polkitd picks up rule changes by itself; restart it anyway so the test
        # does not race its file watch, then give the daemon a new connection.
        machine.run(["systemctl", "restart", "polkit.service"], timeout=60)
        assert pkcheck(machine, "hwgate", ACTIONS[0]) != 0
        cursor = journal_cursor(machine)
        machine.run(["systemctl", "restart", UNIT], timeout=120)
        machine.wait_for(
            f"pcscd's journal to say {REFUSAL!r}",
            lambda: REFUSAL in pcscd_journal_since(machine, cursor),
            timeout=60,
        )
        # The documented symptoms: no pcscd for the daemon at all.
        refused = machine.run(
            [f"{VENV}/bin/hwgate", "--addr", ADMIN, "readers"], check=False, timeout=60
        )
        assert refused.returncode != 0 and "PCSC_UNAVAILABLE" in refused.stdout + refused.stderr
        health = machine.run(
            [f"{VENV}/bin/hwgate", "--addr", ADMIN, "--json", "health"], check=False, timeout=60
        )
        assert json.loads(health.stdout).get("hwgate.v1.CardService") == "NOT_SERVING", health
        # ...and the daemon's own journal says what to do about it.
        hint = "pcscd refused this process"
        machine.wait_for(
            "the daemon's log line about the refusal",
            lambda: hint in machine.run(["journalctl", "-q", "--no-pager", "-u", UNIT,
                                         f"--after-cursor={cursor}"]).stdout,
            timeout=30,
        )  # fmt: skip
    finally:
        machine.run(f"mv /root/rule.saved {RULE} && systemctl restart polkit.service")
    machine.run(["systemctl", "restart", UNIT], timeout=120)
    insert_card(machine)
    machine.wait_for(
        "the card back once the rule is", lambda: daemon_sees_card(machine, card), timeout=60
    )
