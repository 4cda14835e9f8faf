"""pcscd going away and coming back with a different reader: no daemon restart needed.

pcsc-lite 1.9.9 does not rescan serial-driver readers (vpcd) on SIGUSR1, and vpcd
stops detecting cards when a second CHANNELID is configured next to the first,
so a new reader is brought in by restarting pcscd with vpcd's reader renamed.
The daemon must report SERVICE_DOWN, SERVICE_UP, the new reader, and card
events on it, all without restarting.

FACTS (pcsc-lite 2.3.3, Debian 13): the restarted pcscd must be started like the
bed's own (``pcscd.command``: --disable-polkit in testbed/isolated). A plain
``pcscd -f -c DIR`` there asks polkit, which a namespace without a system D-Bus
cannot reach, so every client is refused: the daemon saw SERVICE_DOWN and then
nothing for 15 s (issue 26). With a polkit authority reachable, root is allowed
and the plain command works too.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from hwgate_testbed import pcscd, procs, slots
from hwgate_testbed.paths import vpcd_port
from support.daemon import DaemonProc
from support.events import EventCollector, is_event

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

RENAMED_READER = """FRIENDLYNAME "Hotplug PCD"
DEVICENAME   /dev/null:0x8C7B
LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so
CHANNELID    0x8C7B
"""
NEW_READER = "Hotplug PCD 00 00"


def test_new_reader_and_card_events_after_pcscd_restart(
    hwgated: DaemonProc, testbed: object, tmp_path: Path
) -> None:
    paths = testbed.paths  # type: ignore[attr-defined]
    if not pcscd.status(paths).started_here:
        pytest.skip("pcscd is not the test bed's to restart (as root, make test isolates it)")
    confdir = tmp_path / "reader.conf.d"
    confdir.mkdir()
    (confdir / "hotplug").write_text(RENAMED_READER)
    watcher = EventCollector(hwgated.channel())
    watcher.snapshot()
    try:
        assert pcscd.stop_ours(paths, time.monotonic() + 10)
        watcher.wait_for(is_event("SERVICE_DOWN"))
        pid = procs.spawn_detached(pcscd.command("-c", str(confdir)), tmp_path / "pcscd.log")
        procs.write_pid(paths.pcscd_pid, pid)
        watcher.wait_for(is_event("SERVICE_UP"), timeout=15)
        added = watcher.wait_for(is_event("READER_ADDED", NEW_READER), timeout=15)
        assert not added.snapshot
        card = subprocess.Popen(slots.card_argv(paths.card_dir("alice"), vpcd_port(0)))
        try:
            inserted = watcher.wait_for(is_event("CARD_INSERTED", NEW_READER), timeout=15)
            assert inserted.card.is_piv
        finally:
            card.terminate()
            card.wait(10)
        watcher.wait_for(is_event("CARD_REMOVED", NEW_READER), timeout=15)
        sequences = [e.sequence for e in watcher.seen if not e.snapshot]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    finally:
        pcscd.stop_ours(paths, time.monotonic() + 10)
        pcscd.ensure_running(paths, time.monotonic() + 15)
        watcher.cancel()
