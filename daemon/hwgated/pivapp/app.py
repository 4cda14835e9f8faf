"""``PivApp``: the PIV application on one card connection (yubikit's ``PivSession``).

It sends through :class:`~hwgated.pcsc.connection.Connection` only, and keeps
what it learns in the insertion's :class:`~hwgated.pivapp.state.PivState`.
It SELECTs the PIV application only when something may have changed the
selection (a raw Transmit, a reset, a fresh connection): an extra SELECT
between VERIFY and a "PIN always" signature would void the PIN on real cards.
It sees those through the connection's exchange count, not by reading anyone
else's APDUs. A reset by another program (shared mode) also voids every PIN
the insertion's sessions had verified.
"""

from __future__ import annotations

from hwgated import errors
from hwgated.pcsc.connection import Connection
from hwgated.piv.commands import INS_VERIFY
from hwgated.piv.errors import PivError
from hwgated.piv.session import PivCard
from hwgated.pivapp.state import PivState


class PivApp:
    """A job's handle on the PIV application; cheap, made per job from the connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.state = connection.state(PivState)
        self._card = PivCard(self._send)
        self._sync()

    @property
    def reader(self) -> str:
        return self.connection.reader

    def _sync(self) -> None:
        """Forget the selection and the VERIFY if someone else used the card since,
        and every session's verified PIN if another program reset it."""
        state = self.state
        if self.connection.outside_resets != state.outside_resets_seen:
            state.outside_resets_seen = self.connection.outside_resets
            state.pin_lost |= state.pin_verified
            state.pin_verified.clear()
        if self.connection.exchanges != state.exchanges_seen:
            state.selected = False
            state.last_was_verify = False

    def _send(self, apdu: bytes) -> bytes:
        self._sync()
        try:
            return self.connection.send(apdu)
        finally:
            self.state.exchanges_seen = self.connection.exchanges
            self.state.last_was_verify = len(apdu) >= 2 and apdu[1] == INS_VERIFY

    def card(self) -> PivCard:
        """The PIV card edge, selected (NotFound, 6A82, on a card without PIV)."""
        self._sync()
        if not self.state.selected:
            self._card.select()
            self.state.selected = True
        return self._card

    def last_was_verify(self) -> bool:
        """True when our previous command was a VERIFY and nothing went to the card since."""
        self._sync()
        return self.state.last_was_verify

    def is_piv(self) -> bool:
        """SELECT the PIV application once per insertion; False if the card has none.

        A "no" is asked again once someone else used the card since (a raw
        Transmit, a reset): an applet installed or personalized through Transmit
        makes a card a PIV card in the middle of its insertion.
        """
        if self.state.is_piv is False and self.connection.exchanges != self.state.exchanges_seen:
            self.state.is_piv = None
        if self.state.is_piv is None:
            try:
                self.card()
                self.state.is_piv = True
            except PivError:
                self.state.is_piv = False
        return self.state.is_piv

    def require_piv(self) -> None:
        if not self.is_piv():
            raise errors.NotAPivCard("the card has no PIV application", reader=self.reader)
