"""A job's view of the card in one reader: send bytes, reset, keep per-insertion state.

This is the whole surface card applications use (yubikit's
``SmartCardConnection``): :class:`Connection` names it, :class:`CardConnection`
is the worker's implementation over a pyscard handle. Nothing here knows any
card application; what an application remembers about the card lives in the
per-insertion state slot, in its own typed object.

Two facts about the traffic are kept for the layers around it:

- ``exchanges`` counts every APDU exchange and every reset. An application that
  remembers the count after its own last command knows, when it moved since,
  that someone else (a client's raw APDU, a reset) used the card in between.
- ``tainted`` is set when an APDU that may change a security status went out;
  the worker resets the card after a one-shot job that tainted it, so no PIN
  status outlives the job that set it.
- ``outside_resets`` counts the resets another program did on this insertion
  (shared mode only). Every security status on the card is gone after one, so
  an application that remembers one (a verified PIN) forgets it when it moves.

On a shared connection (``[pcsc] share_mode = "shared"``) other programs may
use the card between the daemon's transactions; the worker then counts an
exchange at the start of each transaction (``outside_use``), so applications
select themselves again instead of trusting a selection someone may have changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from hwgated.pcsc import scard, trace

S = TypeVar("S")

INS_VERIFY = 0x20
# Instructions that read and select but never change a security status: SELECT,
# GET DATA (CA/CB), GET RESPONSE, READ BINARY/RECORD (both forms), GET CHALLENGE.
# Any other APDU (VERIFY, GENERAL AUTHENTICATE, CHANGE REFERENCE DATA, a vendor's
# own authentication, ...) taints the connection: a one-shot job that sent one
# ends with a card reset, so no security status outlives the job that set it.
STATELESS_INS = frozenset({0xA4, 0xCA, 0xCB, 0xC0, 0xB0, 0xB1, 0xB2, 0xB3, 0x84})


def stateless(apdu: bytes) -> bool:
    """True if *apdu* cannot change a security status (VERIFY without data only
    asks for the retry counter)."""
    if len(apdu) < 4:
        return False
    return apdu[1] in STATELESS_INS or (apdu[1] == INS_VERIFY and len(apdu) == 4)


class Connection(Protocol):
    """What a card application may use: the only way down to the card."""

    @property
    def reader(self) -> str: ...

    @property
    def atr(self) -> bytes: ...

    @property
    def exchanges(self) -> int:
        """Exchanges and resets so far on this connection (see the module doc)."""
        ...

    @property
    def outside_resets(self) -> int:
        """Resets by other programs seen on this connection (see the module doc)."""
        ...

    def send(self, apdu: bytes) -> bytes:
        """One APDU out, the response (data and SW1 SW2) back."""
        ...

    def reset(self) -> None:
        """Warm reset: clears the security status of every application."""
        ...

    def state(self, kind: type[S]) -> S:
        """The per-insertion object of *kind*, made with ``kind()`` on first use."""
        ...


class CardConnection:
    """The worker's :class:`Connection` over one pyscard card handle.

    One exists per card handle; a new handle (a new insertion, a reconnect
    after a failure) starts with empty state, so a new card never sees what the
    previous one left.
    """

    def __init__(
        self,
        reader: str,
        card: scard.Card,
        insertion: int,
        on_exchange: Callable[[str], None] | None = None,
    ) -> None:
        self._reader = reader
        self._card = card
        self.insertion = insertion
        self._atr = card.atr()
        self._on_exchange = on_exchange
        self._states: dict[type[Any], Any] = {}
        self._exchanges = 0
        self._outside_resets = 0
        # Set when an APDU that may change a security status went to the card.
        self.tainted = False

    @property
    def reader(self) -> str:
        return self._reader

    @property
    def atr(self) -> bytes:
        return self._atr

    @property
    def exchanges(self) -> int:
        return self._exchanges

    @property
    def outside_resets(self) -> int:
        return self._outside_resets

    def outside_use(self) -> None:
        """Another program may have used the card since our last exchange."""
        self._exchanges += 1

    def outside_reset(self) -> None:
        """Another program reset the card since our last exchange."""
        self._exchanges += 1
        self._outside_resets += 1

    def send(self, apdu: bytes) -> bytes:
        self._exchanges += 1
        if not stateless(apdu):
            self.tainted = True
        if not trace.enabled():
            response = self._card.transmit(apdu)
        else:
            started = time.perf_counter()
            try:
                response = self._card.transmit(apdu)
            except BaseException as exc:
                trace.failed(self._reader, apdu, exc, time.perf_counter() - started)
                raise
            trace.exchange(self._reader, apdu, response, time.perf_counter() - started)
        if self._on_exchange is not None:
            self._on_exchange(self._reader)
        return response

    def reset(self) -> None:
        self._exchanges += 1
        started = time.perf_counter()
        self._card.reset()
        if trace.enabled():
            trace.reset(self._reader, time.perf_counter() - started)
        self.tainted = False

    def state(self, kind: type[S]) -> S:
        value = self._states.get(kind)
        if value is None:
            value = self._states[kind] = kind()
        assert isinstance(value, kind)
        return value
