"""The one-line STATUS= summary systemctl status shows: pcscd, readers, cards, HSMs."""

from __future__ import annotations

from collections.abc import Mapping

from hwgated.hsm import HsmPool
from hwgated.pcsc.events import ReaderState
from hwgated.pcsc.manager import CardManager


def summary(cards: CardManager, pools: Mapping[str, HsmPool]) -> str:
    """E.g. ``pcscd up; 2 readers, 1 card; hsm testbed READY``."""
    if cards.available:
        readers = cards.readers()
        present = sum(1 for slot in readers if slot.state is ReaderState.PRESENT)
        pcsc = (
            f"pcscd up; {len(readers)} reader{'s' * (len(readers) != 1)}, "
            f"{present} card{'s' * (present != 1)}"
        )
    else:
        pcsc = "pcscd unavailable"
    hsm = ", ".join(_token(name, pool) for name, pool in pools.items())
    return f"{pcsc}; hsm {hsm}" if hsm else f"{pcsc}; no hsm"


def _token(name: str, pool: HsmPool) -> str:
    """``testbed READY``; a token that cannot serve also says why (its ErrorReason)."""
    error = None if pool.healthy else pool.last_error
    return f"{name} {pool.state.value}" + (f" ({error.reason})" if error else "")
