"""What the test bed looks like right now, and putting it back the way it was.

The pytest plugin takes a :class:`BedState` before each test and compares it with
the state afterwards: a card a test left in a reader, a card it pulled and did
not put back, or a pcscd it stopped is undone here, so the next test starts
from the same bed whatever order the tests run in.

"Our" cards are virtual-card processes whose card directory lies under one of
the roots this session owns (its test beds, its temp dirs): only those are ever
stopped or re-inserted. A card from anywhere else (a developer's own bed on the
host pcscd) is reported, never touched.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from hwgate_testbed import pcscd, procs, slots
from hwgate_testbed.paths import VPCD_READER_PREFIX, TestbedPaths, vpcd_port, vpcd_reader

_READER_PREFIX = f"{VPCD_READER_PREFIX} 00 "


@dataclass(frozen=True)
class SlotState:
    """One vpcd reader as pcscd reports it, and the card process serving it."""

    slot: int
    present: bool
    pid: int | None = None  # the virtual card process on the slot's vpcd port
    card_dir: Path | None = None

    @property
    def card(self) -> str | None:
        return self.card_dir.name if self.card_dir else None

    def same_card(self, other: SlotState) -> bool:
        """Both hold the same card (a re-insertion of it counts as the same)."""
        return self.present == other.present and self.card_dir == other.card_dir


@dataclass(frozen=True)
class BedState:
    pcscd_up: bool
    readers: tuple[str, ...]
    slots: dict[int, SlotState] = field(default_factory=dict)

    def describe(self) -> str:
        held = [f"{s.slot}:{s.card or '?'}" for s in self.slots.values() if s.present]
        pcsc = "up" if self.pcscd_up else "down"
        return f"pcscd {pcsc}, cards [{', '.join(held)}]"


def vpcd_slot(reader: str) -> int | None:
    """The slot number of a vpcd reader name, None for any other reader."""
    tail = reader.removeprefix(_READER_PREFIX)
    return int(tail) if tail != reader and tail.isdigit() else None


def _net_namespace(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def card_processes() -> dict[int, tuple[int, Path]]:
    """Virtual card processes by vpcd port: {port: (pid, card dir)}.

    Only those in this network namespace: vpcd's ports are per namespace, and
    other runs (testbed/isolated, other engineers) have card processes on the
    same port numbers in theirs."""
    found: dict[int, tuple[int, Path]] = {}
    here = _net_namespace("self")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or _net_namespace(entry.name) != here:
            continue
        args = procs.cmdline(int(entry.name))
        if not args or slots.VCARD_MODULE not in args:
            continue
        with contextlib.suppress(ValueError, IndexError):
            port = int(args[args.index("--port") + 1])
            card_dir = Path(args[args.index("--card-dir") + 1])
            found[port] = (int(entry.name), card_dir)
    return found


def snapshot() -> BedState:
    """pcscd's view of the vpcd readers plus who serves each card."""
    names = pcscd.list_readers()
    if names is None:
        return BedState(False, ())
    states = pcscd.reader_states() if names else []
    present = {s.name: s.present for s in states}
    processes = card_processes() if any(present.values()) else {}
    result: dict[int, SlotState] = {}
    for name in names:
        slot = vpcd_slot(name)
        if slot is None:
            continue
        pid, card_dir = processes.get(vpcd_port(slot), (None, None))
        result[slot] = SlotState(slot, present.get(name, False), pid, card_dir)
    return BedState(pcscd.vpcd_answers(), tuple(sorted(names)), result)


@dataclass
class Restorer:
    """Undoes the difference between two snapshots, within one deadline."""

    paths: TestbedPaths  # the session's test bed: pcscd is (re)started through it
    owned_roots: tuple[Path, ...]
    deadline: float
    done: list[str] = field(default_factory=list)  # what was restored, for the report
    failed: list[str] = field(default_factory=list)  # what could not be

    def owned(self, card_dir: Path | None) -> bool:
        if card_dir is None:
            return False
        resolved = card_dir.resolve()
        return any(resolved.is_relative_to(root) for root in self.owned_roots)

    def restore(self, before: BedState) -> BedState:
        """Undo what changed since *before*; the bed as it is afterwards."""
        now = snapshot()
        if now == before:
            return now  # the common case: one look, nothing to do
        if before.pcscd_up and not now.pcscd_up:
            self.done.append("pcscd was down: restarted")
            pcscd.ensure_running(self.paths, self.deadline)
            now = snapshot()
        elif before.readers != now.readers and before.pcscd_up:
            self._restart_pcscd(before, now)
            now = snapshot()
        for slot in sorted(set(before.slots) | set(now.slots)):
            was = before.slots.get(slot, SlotState(slot, False))
            is_ = now.slots.get(slot, SlotState(slot, False))
            if was.same_card(is_):
                continue
            if is_.present:
                self._remove(is_)
            if was.present:
                self._insert(was)
        return snapshot()

    def cycle(self, state: SlotState) -> None:
        """Pull the card and put it back (ends whatever a daemon tied to that insertion)."""
        self._remove(state, note=False)
        self._insert(state, note=False)

    def _restart_pcscd(self, before: BedState, now: BedState) -> None:
        if not pcscd.status(self.paths).started_here:
            self.failed.append(f"pcscd lists {list(now.readers)}, not {list(before.readers)}")
            return
        self.done.append(f"pcscd listed {list(now.readers)}: restarted")
        pcscd.stop_ours(self.paths, self.deadline)
        pcscd.ensure_running(self.paths, self.deadline)

    def _remove(self, state: SlotState, note: bool = True) -> None:
        reader = vpcd_reader(state.slot)
        if state.pid is None:
            # Its process is gone; pcscd notices at its next presence poll.
            try:
                pcscd.wait_for_reader_state(reader, False, self.deadline)
                return
            except pcscd.PcscError as exc:
                self.failed.append(f"{reader} holds a card with no process behind it: {exc}")
                return
        if not self.owned(state.card_dir):
            self.failed.append(f"{reader} holds a card this session did not insert ({state})")
            return
        if note:
            self.done.append(f"card {state.card!r} left in slot {state.slot}: removed")
        assert state.card_dir is not None
        bed = TestbedPaths.at(state.card_dir.parent.parent)
        if slots.occupant(bed, state.slot) is not None:
            slots.remove(bed, state.slot, timeout=self._remaining())
            return
        # Started by hand (a bare card process): stop it the same way.
        marker = (slots.VCARD_MODULE, "--port", str(vpcd_port(state.slot)))
        procs.terminate(state.pid, marker, self.deadline)
        pcscd.wait_for_reader_state(reader, False, self.deadline)

    def _insert(self, state: SlotState, note: bool = True) -> None:
        if not self.owned(state.card_dir) or state.card is None:
            self.failed.append(f"slot {state.slot}: a card from elsewhere is gone; not restored")
            return
        assert state.card_dir is not None
        if note:
            self.done.append(f"card {state.card!r} missing from slot {state.slot}: re-inserted")
        bed = TestbedPaths.at(state.card_dir.parent.parent)
        # A card process can outlive its card: vpcd may drop a card (pcscd then
        # reports the reader empty) a moment before the process notices and exits.
        slots.remove(bed, state.slot, timeout=self._remaining())
        slots.insert(bed, state.slot, state.card, timeout=self._remaining())

    def _remaining(self) -> float:
        return max(0.1, self.deadline - time.monotonic())
