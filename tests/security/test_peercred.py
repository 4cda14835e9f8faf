"""Local clients are told apart by uid (SO_PEERCRED through the daemon's relay).

Clients run as other uids (tests/security/peer_client.py drops root itself);
the sockets live in a world-traversable directory with mode 0666 so they can
connect at all (the file-mode rules are another test's business).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hwgate_testbed.paths import vpcd_reader
from support.daemon import DaemonProc, start_daemon

pytestmark = [
    pytest.mark.testbed,
    pytest.mark.skipif(os.geteuid() != 0, reason="running clients as other uids needs root"),
]

R0, R1 = vpcd_reader(0), vpcd_reader(1)
ALICE, BOB, MAPPED = 4241, 4242, 4243  # uids; MAPPED is an admin by policy
CLIENT = Path(__file__).with_name("peer_client.py")

POLICY = f"""
[policy.roles.kiosk]
allow = ["hwgate.v1.CardService/ListReaders", "hwgate.v1.CardService/OpenSession",
         "hwgate.v1.CardService/CloseSession", "hwgate.v1.PivService/*"]
[policy.roles.admin]
allow = ["*"]
[[policy.identity]]
uid = {MAPPED}
role = "admin"
[[policy.readers]]
pattern = "*"
roles = ["kiosk", "admin"]
"""


@dataclass
class PeerDaemon:
    proc: DaemonProc
    directory: Path

    @property
    def socket(self) -> Path:
        return self.directory / "hwgate.sock"

    def call(self, uid: int, op: str, arg: str = "") -> dict[str, Any]:
        """Run one RPC as *uid* (gid = uid) in a fresh process."""
        done = subprocess.run(
            [sys.executable, str(CLIENT), str(self.socket), str(uid), str(uid), op, arg],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def audit_records(self) -> list[dict[str, Any]]:
        path = self.directory / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def peerd(testbed: Any) -> Iterator[PeerDaemon]:
    directory = Path(tempfile.mkdtemp(prefix="hwgate-peer-", dir="/tmp"))
    directory.chmod(0o755)
    sock = directory / "hwgate.sock"
    config = directory / "hwgated.toml"
    config.write_text(
        '[daemon]\nlog_level = "debug"\ngrace_period = 1\n'
        f'[[listen]]\nunix = "{sock}"\nmode = "0666"\nrole = "kiosk"\n'
        f'[audit]\nfile = "{directory / "audit.jsonl"}"\n'
        "[limits]\nmax_sessions_per_identity = 1\n"
        f"{POLICY}"
    )
    proc = start_daemon(config, sock, directory / "hwgated.log")
    try:
        yield PeerDaemon(proc, directory)
    finally:
        proc.stop(signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)


def test_uids_cannot_use_or_close_each_others_sessions(peerd: PeerDaemon, cards: Any) -> None:
    cards.insert(0, "alice")
    session = peerd.call(ALICE, "open", R0)["ok"]
    assert peerd.call(BOB, "info", session) == {"error": "SESSION_NOT_OWNED"}
    assert peerd.call(BOB, "close", session) == {"error": "SESSION_NOT_OWNED"}
    # Another process of the same uid is the same identity.
    assert peerd.call(ALICE, "info", session) == {"ok": R0}
    assert peerd.call(ALICE, "close", session) == {"ok": True}


def test_uids_have_separate_limits(peerd: PeerDaemon, cards: Any) -> None:
    """max_sessions_per_identity = 1 holds per uid, not for the whole socket."""
    cards.insert(0, "alice")
    cards.insert(1, "bob")
    first = peerd.call(ALICE, "open", R0)["ok"]
    try:
        assert peerd.call(ALICE, "open", R1) == {"error": "TOO_MANY_SESSIONS"}
        second = peerd.call(BOB, "open", R1)["ok"]
        assert peerd.call(BOB, "close", second) == {"ok": True}
    finally:
        assert peerd.call(ALICE, "close", first) == {"ok": True}


def test_a_uid_mapped_by_policy_gets_its_role_and_the_audit_names_the_uid(
    peerd: PeerDaemon, cards: Any
) -> None:
    cards.insert(0, "alice")
    assert peerd.call(ALICE, "select", R0) == {"error": "POLICY_DENIED"}  # kiosk: no Transmit
    assert peerd.call(MAPPED, "select", R0) == {"ok": 0x9000}  # admin by its uid
    records = [r for r in peerd.audit_records() if r["action"] == "card.transmit"]
    assert records[-1]["subject"] == f"uid:{MAPPED}" and records[-1]["role"] == "admin"
    assert records[-1]["peer"].startswith("pid=") and f"gid={MAPPED}" in records[-1]["peer"]


def test_processes_of_one_uid_are_one_identity_with_their_pids_audited(
    peerd: PeerDaemon, cards: Any
) -> None:
    """Three processes of one uid: one identity (the session limit of 1 never trips)."""
    cards.insert(0, "alice")
    for _ in range(3):
        session = peerd.call(ALICE, "open", R0)["ok"]
        assert peerd.call(ALICE, "close", session) == {"ok": True}
    opened = [r for r in peerd.audit_records() if r["action"] == "card.session_open"]
    assert {r["subject"] for r in opened} == {f"uid:{ALICE}"}
    assert len({r["peer"] for r in opened}) == 3  # three processes, three pids
