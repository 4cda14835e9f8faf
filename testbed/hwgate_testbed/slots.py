"""Card processes: one virtual card process per vpcd slot.

Inserting a card = starting `python -m hwgate_testbed.vcard` for its profile on
the slot's vpcd port; removing it = stopping that process. Both return only
once pcscd itself reports the new reader state, so callers never race pcscd's
~400 ms presence polling.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hwgate_testbed import cards as card_store
from hwgate_testbed import pcscd, procs
from hwgate_testbed.paths import TestbedPaths, vpcd_port, vpcd_reader

VCARD_MODULE = "hwgate_testbed.vcard"
INSERT_TIMEOUT = 10.0
INSERT_ATTEMPTS = 3
REMOVE_TIMEOUT = 10.0


class SlotBusy(RuntimeError):
    """The slot already holds a card."""


@dataclass(frozen=True)
class CardHandle:
    """A card inserted in a slot by this test bed."""

    slot: int
    name: str
    reader: str
    port: int
    pid: int
    card_dir: Path
    log: Path


def card_argv(card_dir: Path, port: int, profile: str | None = None) -> list[str]:
    """The card process for *card_dir* on vpcd *port*, with quirk *profile* (None: standard)."""
    argv = [sys.executable, "-m", VCARD_MODULE, "--card-dir", str(card_dir), "--port", str(port)]
    return argv + (["--profile", profile] if profile is not None else [])


def _marker(slot: int) -> tuple[str, ...]:
    return (VCARD_MODULE, "--port", str(vpcd_port(slot)))


def occupant(paths: TestbedPaths, slot: int) -> CardHandle | None:
    """The live card process this test bed started for `slot`, if any."""
    pid = procs.read_pid(paths.slot_pid(slot))
    if pid is None or not procs.is_running(pid, _marker(slot)):
        return None
    try:
        name = paths.slot_card(slot).read_text().strip()
    except FileNotFoundError:
        name = "?"
    return CardHandle(slot, name, vpcd_reader(slot), vpcd_port(slot), pid,
                      paths.card_dir(name), paths.slot_log(slot))  # fmt: skip


def known_slots(paths: TestbedPaths) -> list[int]:
    """Slots that have a pid file in this test bed."""
    if not paths.slots.is_dir():
        return []
    return sorted(int(p.stem) for p in paths.slots.glob("*.pid") if p.stem.isdigit())


def _forget(paths: TestbedPaths, slot: int) -> None:
    paths.slot_pid(slot).unlink(missing_ok=True)
    paths.slot_card(slot).unlink(missing_ok=True)


def insert(
    paths: TestbedPaths,
    slot: int,
    name: str,
    timeout: float = INSERT_TIMEOUT,
    profile: str | None = None,
) -> CardHandle:
    """Start the card process for `name` in `slot`; return once pcscd sees the card.

    *profile* names a quirk profile (``hwgate_testbed.vcard.quirks``) for this
    insertion only; None serves the card as provisioned.

    vpcd now and then drops a card's connection right after accepting it (seen
    right after another card left the slot); the card process then exits at once.
    That is retried, after pcscd reports the slot empty again.
    """
    reader = vpcd_reader(slot)
    if (busy := occupant(paths, slot)) is not None:
        raise SlotBusy(f"slot {slot} already holds card {busy.name!r} (pid {busy.pid})")
    _forget(paths, slot)
    card_store.ensure_quirk_material(paths, name, profile)
    deadline = time.monotonic() + timeout
    if pcscd.card_present(reader):
        # A card that just left may still be reported until pcscd's next presence poll.
        try:
            pcscd.wait_for_reader_state(reader, False, min(deadline, time.monotonic() + 1.0))
        except pcscd.PcscError:
            raise SlotBusy(
                f"slot {slot} ({reader}) holds a card this test bed did not insert"
            ) from None
    for attempt in range(INSERT_ATTEMPTS):
        try:
            return _start_card(paths, slot, name, deadline, profile)
        except _CardExited:
            if attempt + 1 == INSERT_ATTEMPTS:
                raise pcscd.PcscError(
                    f"{reader}: card process exited; see {paths.slot_log(slot)}"
                ) from None
            pcscd.wait_for_reader_state(reader, False, deadline)
    raise AssertionError("unreachable")


class _CardExited(Exception):
    """The card process ended before pcscd saw the card."""


def _start_card(
    paths: TestbedPaths, slot: int, name: str, deadline: float, profile: str | None
) -> CardHandle:
    reader = vpcd_reader(slot)
    card_dir = paths.card_dir(name)
    argv = card_argv(card_dir, vpcd_port(slot), profile)
    pid = procs.spawn_detached(argv, paths.slot_log(slot))
    procs.write_pid(paths.slot_pid(slot), pid)
    paths.slot_card(slot).write_text(name + "\n")

    def died() -> str | None:
        if procs.is_running(pid, _marker(slot)):
            return None
        return "card process exited"

    try:
        pcscd.wait_for_reader_state(reader, True, deadline, give_up=died)
    except pcscd.PcscError as exc:
        procs.terminate(pid, _marker(slot), time.monotonic() + REMOVE_TIMEOUT)
        _forget(paths, slot)
        if "card process exited" in str(exc):
            raise _CardExited from exc
        raise
    return CardHandle(slot, name, reader, vpcd_port(slot), pid, card_dir, paths.slot_log(slot))


def remove(paths: TestbedPaths, slot: int, timeout: float = REMOVE_TIMEOUT) -> CardHandle | None:
    """Stop the slot's card process and wait until pcscd reports the reader empty.
    Returns the card that was removed, or None if the slot held none of ours."""
    card = occupant(paths, slot)
    _forget(paths, slot)
    if card is None:
        return None
    deadline = time.monotonic() + timeout
    procs.terminate(card.pid, _marker(slot), deadline)
    if pcscd.list_readers():  # pcscd gone (e.g. during down): nothing to wait for
        pcscd.wait_for_reader_state(card.reader, False, deadline)
    return card
