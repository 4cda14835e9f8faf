"""The only module that imports pyscard: typed wrappers over ``smartcard.scard``.

pyscard's low-level primitives are used directly (not its monitors, which poll
and lose events). PC/SC return codes become exceptions once, here, so the rest
of the daemon reasons about meanings: pcscd gone, card gone, reader gone.
APDUs are ``bytes`` everywhere else; ``list[int]`` lives only in this file.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from smartcard import scard

PNP_READER = "\\\\?PnP?\\Notification"
INFINITE = scard.INFINITE

STATE_UNAWARE = scard.SCARD_STATE_UNAWARE
STATE_IGNORE = scard.SCARD_STATE_IGNORE
STATE_CHANGED = scard.SCARD_STATE_CHANGED
STATE_UNKNOWN = scard.SCARD_STATE_UNKNOWN
STATE_UNAVAILABLE = scard.SCARD_STATE_UNAVAILABLE
STATE_EMPTY = scard.SCARD_STATE_EMPTY
STATE_PRESENT = scard.SCARD_STATE_PRESENT
STATE_MUTE = scard.SCARD_STATE_MUTE


class PcscError(Exception):
    """A PC/SC call failed; ``code`` is the SCARD_* result."""

    def __init__(self, call: str, code: int) -> None:
        self.call = call
        self.code = code & 0xFFFFFFFF
        super().__init__(f"{call}: {_message(code)} (0x{self.code:08X})")


class ServiceUnavailable(PcscError):
    """pcscd is not running or our context died with it."""


class AccessRefused(PcscError):
    """pcscd refused this process (pcsc-lite 2.x's polkit check)."""


class CardGone(PcscError):
    """The card was removed (or reset by someone else) under us."""


class CardReset(CardGone):
    """Another program reset the card (SCARD_W_RESET_CARD): the card is still there,
    but every security status and selection on it is gone. Only a shared
    connection sees it; ``Card.reconnect`` clears it."""


class ReaderGone(PcscError):
    """The reader disappeared."""


class Cancelled(PcscError):
    """SCardCancel woke a blocking call."""


class Timeout(PcscError):
    """A blocking call timed out."""


class NoCard(PcscError):
    """Connect found no card (or a mute one) in the reader."""


_SERVICE = {scard.SCARD_E_NO_SERVICE, scard.SCARD_F_COMM_ERROR, scard.SCARD_E_SERVICE_STOPPED}
_CARD_GONE = {
    scard.SCARD_W_REMOVED_CARD,
    scard.SCARD_W_RESET_CARD,
    scard.SCARD_E_NO_SMARTCARD,
    scard.SCARD_W_UNPOWERED_CARD,
}
_NO_CARD = {scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_E_NO_SMARTCARD}
# FACTS (Debian 13, pcsc-lite 2.3.3): pcscd built with polkit checks every client
# against org.debian.pcsc-lite.access_pcsc when it connects and access_card at
# SCardConnect; a client polkit refuses gets SCARD_W_SECURITY_VIOLATION
# (0x8010006A, "Access denied.") from SCardEstablishContext, and pcscd logs
# "Rejected unauthorized PC/SC client". polkitd authorizes root always; a
# system user without a session (hwgated's User=hwgate) only through a rule
# (systemd/50-hwgate-pcscd.rules); with no polkit authority reachable everyone
# is refused. pcsc-lite 1.9 (Debian 12) never returns it for this.
_REFUSED = {scard.SCARD_W_SECURITY_VIOLATION}
_READER_GONE = {scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE}


def _message(code: int) -> str:
    try:
        return str(scard.SCardGetErrorMessage(code))
    except Exception:  # pyscard raises on codes it does not know
        return "unknown PC/SC error"


def check(call: str, code: int, *, connecting: bool = False) -> None:
    """Raise the exception that gives *code* its meaning; return on success."""
    if code == scard.SCARD_S_SUCCESS:
        return
    code &= 0xFFFFFFFF
    if code in _SERVICE:
        raise ServiceUnavailable(call, code)
    if code in _REFUSED and not connecting:
        raise AccessRefused(call, code)
    if code == scard.SCARD_E_CANCELLED:
        raise Cancelled(call, code)
    if code == scard.SCARD_E_TIMEOUT:
        raise Timeout(call, code)
    if code in _READER_GONE:
        raise ReaderGone(call, code)
    if connecting and code in _NO_CARD:
        raise NoCard(call, code)
    if code == scard.SCARD_W_RESET_CARD:
        raise CardReset(call, code)
    if code in _CARD_GONE:
        raise CardGone(call, code)
    raise PcscError(call, code)


@dataclass
class ReaderStatus:
    """One reader's state as SCardGetStatusChange reports it."""

    name: str
    event_state: int
    atr: bytes

    @property
    def present(self) -> bool:
        return bool(self.event_state & STATE_PRESENT)

    @property
    def mute(self) -> bool:
        return bool(self.event_state & STATE_MUTE)

    @property
    def unavailable(self) -> bool:
        return bool(self.event_state & (STATE_UNAVAILABLE | STATE_UNKNOWN | STATE_IGNORE))

    @property
    def event_count(self) -> int:
        """pcsc-lite's per-reader insert/remove counter (upper 16 bits)."""
        return (self.event_state >> 16) & 0xFFFF


class Context:
    """An SCARDCONTEXT. Not shared between threads: each thread makes its own."""

    def __init__(self) -> None:
        code, handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        check("SCardEstablishContext", code)
        self.handle = handle
        self._released = False

    def list_readers(self) -> list[str]:
        code, readers = scard.SCardListReaders(self.handle, [])
        if code == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        check("SCardListReaders", code)
        return sorted(readers)

    def get_status_change(
        self, states: list[tuple[str, int]], timeout_ms: int = INFINITE
    ) -> list[ReaderStatus]:
        code, new = scard.SCardGetStatusChange(self.handle, timeout_ms, states)
        check("SCardGetStatusChange", code)
        return [ReaderStatus(name, state, bytes(atr)) for name, state, atr in new]

    def cancel(self) -> None:
        """Wake a thread blocked in get_status_change (safe from any thread)."""
        with contextlib.suppress(Exception):
            scard.SCardCancel(self.handle)

    def release(self) -> None:
        if not self._released:
            self._released = True
            with contextlib.suppress(Exception):
                scard.SCardReleaseContext(self.handle)

    def connect(self, reader: str, *, shared: bool = False) -> Card:
        """An exclusive handle on the card in *reader*, or with *shared* a shared one
        (whose user must hold a transaction around its work, see :class:`Card`)."""
        share = scard.SCARD_SHARE_SHARED if shared else scard.SCARD_SHARE_EXCLUSIVE
        code, hcard, protocol = scard.SCardConnect(
            self.handle, reader, share, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        check("SCardConnect", code, connecting=True)
        return Card(hcard, protocol, share)


class Card:
    """An SCARDHANDLE on one card, exclusive or shared.

    On a shared handle other programs' APDUs may come between ours, and another
    program may reset the card (our next call fails with :class:`CardReset`).
    A transaction (``begin_transaction`` .. ``end_transaction``) keeps both out:
    pcsc-lite then makes every other handle's transmit, reconnect, reset and
    transaction wait until it ends.
    """

    def __init__(
        self, handle: int, protocol: int, share: int = scard.SCARD_SHARE_EXCLUSIVE
    ) -> None:
        self.handle = handle
        self.protocol = protocol
        self.share = share
        self._open = True

    def transmit(self, apdu: bytes) -> bytes:
        """The response with its status word; an answer without one is a transport failure.

        When a card is pulled mid-command, some readers (vpcd among them) complete
        SCardTransmit "successfully" with no bytes: that is no verdict of the card
        (for a VERIFY it must never pass for one), so it fails like a lost transaction
        and the worker asks pcscd whether the card is gone.
        """
        code, response = scard.SCardTransmit(self.handle, self.protocol, list(apdu))
        check("SCardTransmit", code)
        if len(response) < 2:
            raise PcscError("SCardTransmit", scard.SCARD_E_NOT_TRANSACTED)
        return bytes(response)

    def atr(self) -> bytes:
        code, _reader, _state, _protocol, atr = scard.SCardStatus(self.handle)
        check("SCardStatus", code)
        return bytes(atr)

    def reset(self) -> None:
        """Warm-reset the card: clears every application's security status (PIN)."""
        self.reconnect(reset=True)

    def reconnect(self, *, reset: bool) -> None:
        """SCardReconnect in the handle's own share mode: with *reset* a warm reset;
        without, it only acknowledges a reset another program did (clearing
        SCARD_W_RESET_CARD) and renegotiates the protocol. A transaction this handle
        holds survives it."""
        code, protocol = scard.SCardReconnect(
            self.handle,
            self.share,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            scard.SCARD_RESET_CARD if reset else scard.SCARD_LEAVE_CARD,
        )
        check("SCardReconnect", code)
        self.protocol = protocol

    def begin_transaction(self) -> None:
        """Wait until no other handle holds a transaction on the card, then hold one.

        pcsc-lite's client polls for this without a timeout and SCardCancel does not
        reach it; it returns early when the card is removed or was reset
        (:class:`CardReset`) since this handle last used it.
        """
        check("SCardBeginTransaction", scard.SCardBeginTransaction(self.handle))

    def end_transaction(self) -> None:
        """Let other handles in again; the card is left as it is."""
        check("SCardEndTransaction", scard.SCardEndTransaction(self.handle, scard.SCARD_LEAVE_CARD))

    def disconnect(self, reset: bool = False) -> None:
        if self._open:
            self._open = False
            disposition = scard.SCARD_RESET_CARD if reset else scard.SCARD_LEAVE_CARD
            with contextlib.suppress(Exception):
                scard.SCardDisconnect(self.handle, disposition)
