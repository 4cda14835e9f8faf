"""The test bed's verbs (up, insert, remove, status, down) as library calls.

The CLI and the pytest plugin both call these, one call per verb, so a test
exercises exactly what a developer runs by hand. Every verb is idempotent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from hwgate_testbed import (
    cards,
    daemon_config,
    envfile,
    escrow,
    pcscd,
    slots,
    softhsm,
    tlspki,
    tpm2token,
)
from hwgate_testbed.paths import (
    DEFAULT_CARDS,
    PIV_PIN,
    PIV_PUK,
    TOKEN_LABEL,
    VPCD_READER_PREFIX,
    TestbedPaths,
    vpcd_port,
    vpcd_reader,
)
from hwgate_testbed.vcard.quirks import quirk_profile

PCSCD_START_TIMEOUT = 10.0
DOWN_TIMEOUT = 10.0


class TestbedError(RuntimeError):
    """A verb could not do what was asked; the message says why."""

    __test__ = False


@dataclass
class UpResult:
    """What `up` found or did."""

    paths: TestbedPaths
    pcscd: pcscd.PcscdStatus
    token: softhsm.TokenInfo
    pki: tlspki.TlsPki
    cards: list[str]
    inserted: slots.CardHandle | None = None
    notes: list[str] = field(default_factory=list)


def up(paths: TestbedPaths, insert_card: bool = True) -> UpResult:
    """Start what is missing and provision what is absent; see the module doc."""
    paths.root.mkdir(parents=True, exist_ok=True)
    pcsc = pcscd.ensure_running(paths, time.monotonic() + PCSCD_START_TIMEOUT)
    token = softhsm.provision_token(paths)
    cards.ensure_piv_ca(paths)
    cards.ensure_piv_crl(paths)
    for name, key_type in DEFAULT_CARDS.items():
        cards.ensure_card(paths, name, key_type)
    pki = tlspki.ensure_pki(paths)
    envfile.write(paths)
    daemon_config.write(paths, pki)
    result = UpResult(paths, pcsc, token, pki, cards.list_cards(paths))
    if insert_card:
        _insert_default(result)
    return result


def _insert_default(result: UpResult) -> None:
    """Put alice in slot 0 unless a card is already there (ours: kept as is;
    someone else's: left alone and noted, since `up` must not fail on it)."""
    current = slots.occupant(result.paths, 0)
    if current is not None:
        result.inserted = current
        return
    try:
        result.inserted = slots.insert(result.paths, 0, "alice")
    except slots.SlotBusy as exc:
        result.notes.append(f"no card inserted: {exc}")


def insert(
    paths: TestbedPaths, slot: int, name: str, key_type: str | None, profile: str | None = None
) -> slots.CardHandle:
    """Provision `name` if needed and insert it into `slot` (with quirk `profile`)."""
    _need_pcscd()
    if slot < 0:
        raise TestbedError(f"bad slot {slot}")
    if vpcd_reader(slot) not in (pcscd.list_readers() or []):
        raise TestbedError(f"pcscd has no reader {vpcd_reader(slot)!r} for slot {slot}")
    try:
        quirk_profile(profile)  # an unknown name fails here, not in the card process
        cards.ensure_card(paths, name, key_type)
        return slots.insert(paths, slot, name, profile=profile)
    except (cards.CardError, slots.SlotBusy, ValueError) as exc:
        raise TestbedError(str(exc)) from exc


def remove(paths: TestbedPaths, slot: int) -> slots.CardHandle | None:
    """Remove this test bed's card from `slot` (None if it held none)."""
    return slots.remove(paths, slot)


def tpm2_up(paths: TestbedPaths) -> tpm2token.Tpm2Token:
    """Bring up the second PKCS#11 implementation (tpm2-pkcs11 over swtpm, see
    ``tpm2token``). Not part of `up`: it costs 1-2 s, so only who needs it pays."""
    paths.root.mkdir(parents=True, exist_ok=True)
    try:
        return tpm2token.up(paths)
    except tpm2token.Tpm2Error as exc:
        raise TestbedError(str(exc)) from exc


def down(paths: TestbedPaths) -> dict[str, Any]:
    """Stop the card processes, the TPM stack and the pcscd this test bed started;
    keep all files."""
    removed = [c for s in slots.known_slots(paths) if (c := slots.remove(paths, s)) is not None]
    stopped_tpm2 = tpm2token.down(paths)
    stopped_pcscd = pcscd.stop_ours(paths, time.monotonic() + DOWN_TIMEOUT)
    return {
        "removed": [{"slot": c.slot, "card": c.name, "pid": c.pid} for c in removed],
        "tpm2_stopped": stopped_tpm2,
        "pcscd_stopped": stopped_pcscd,
    }


def _need_pcscd() -> None:
    if not pcscd.vpcd_answers():
        raise TestbedError("pcscd with the vpcd readers is not running: run `up` first")


def status(paths: TestbedPaths) -> dict[str, Any]:
    """Everything `status` shows, as JSON-ready data."""
    pcsc = pcscd.status(paths)
    readers = pcscd.reader_states() if pcsc.running else []
    present = {r.name: r.present for r in readers}
    slot_ids = sorted({*slots.known_slots(paths), *_vpcd_slots(readers)})
    slot_rows = []
    processes: list[dict[str, Any]] = []
    if pcsc.started_here:
        processes.append({"what": "pcscd", "pid": pcsc.pid})
    for s in slot_ids:
        card = slots.occupant(paths, s)
        slot_rows.append({
            "slot": s, "reader": vpcd_reader(s), "port": vpcd_port(s),
            "card": card.name if card else None, "pid": card.pid if card else None,
            "present": present.get(vpcd_reader(s)),
        })  # fmt: skip
        if card:
            processes.append({"what": f"card {card.name} (slot {s})", "pid": card.pid})
    return {
        "dir": str(paths.root),
        "pcscd": {"running": pcsc.running, "started_here": pcsc.started_here, "pid": pcsc.pid},
        "readers": [{"name": r.name, "present": r.present, "atr": r.atr.hex()} for r in readers],
        "slots": slot_rows,
        "cards": cards.list_cards(paths),
        "token": _token_status(paths),
        "escrow": [
            {"card": r["card"], "guid": r["guid"], "key_algorithm": r["key_algorithm"]}
            for r in escrow.records(paths)
        ],
        "processes": processes,
        "piv": {"pin": PIV_PIN, "puk": PIV_PUK},
    }


def _vpcd_slots(readers: list[pcscd.ReaderState]) -> list[int]:
    """Slot numbers of the vpcd readers ("Virtual PCD 00 NN" -> NN)."""
    out = []
    for r in readers:
        tail = r.name.removeprefix(VPCD_READER_PREFIX + " 00 ")
        if r.name.startswith(VPCD_READER_PREFIX) and tail.isdigit():
            out.append(int(tail))
    return out


def _token_status(paths: TestbedPaths) -> dict[str, Any]:
    if not paths.softhsm_conf.exists():
        return {"label": TOKEN_LABEL, "provisioned": False, "keys": []}
    try:
        keys = softhsm.list_keys(paths)
    except Exception as exc:  # status must report, not crash, on a broken token
        return {"label": TOKEN_LABEL, "provisioned": False, "error": str(exc), "keys": []}
    labels = sorted({k["label"] for k in keys})
    return {"label": TOKEN_LABEL, "provisioned": True, "keys": labels, "objects": keys}
