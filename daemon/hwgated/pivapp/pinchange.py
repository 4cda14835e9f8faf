"""PIN change and unblock on a session's card (CHANGE REFERENCE DATA, RESET RETRY COUNTER).

Runs on the reader's worker thread (as a ``CardManager.run`` job), like
:func:`hwgated.pivapp.pin.verify_pin`, with the same guards:

- ChangePin spends a PIN retry when the old PIN is wrong, so the PIN's counter
  is read first (empty VERIFY) and a last retry is spent only when allowed.
- UnblockPin spends a PUK retry when the PUK is wrong. PIV offers no way to read
  the PUK's counter without spending a try (VERIFY does not take key reference
  81), so the daemon remembers what the card last reported for this insertion
  (:class:`PukState`) and guards a last *known* try. A card fresh in the reader
  has an unknown count: the first wrong PUK tells it.

Afterwards the session's PIN record is void, whatever the outcome. A successful
CHANGE REFERENCE DATA leaves the card's PIN status *verified* (SP 800-73-4
part 2 §3.2.2), which would let a "PIN once" key (9D) sign without VerifyPin,
so the card is told to forget it (VERIFY P1=FF) at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from hwgated import errors
from hwgated.pcsc.connection import Connection
from hwgated.piv import errors as piv_errors
from hwgated.piv.commands import PIN_REFERENCE_APPLICATION
from hwgated.piv.pinbuffer import PinBuffer
from hwgated.pivapp.app import PivApp
from hwgated.pivapp.pin import guarded_pin_retries, pin_reference, session_app, wrong_pin

log = logging.getLogger(__name__)


@dataclass
class PukState:
    """The PUK retries the card last reported in this insertion (None: unknown)."""

    retries_left: int | None = None


def change_pin(
    connection: Connection,
    old: PinBuffer,
    new: PinBuffer,
    allow_last_attempt: bool,
    session_id: str,
) -> int | None:
    """CHANGE REFERENCE DATA of the PIN; returns the PIN retries left before it.

    Raises PinBlocked, LastPinAttempt (nothing sent), PinIncorrect (retries_left)
    or PinFormat.
    """
    app = session_app(connection, session_id)
    retries = guarded_pin_retries(app, allow_last_attempt)
    reference = pin_reference(app)  # the global PIN (00) on a global-PIN-primary card
    with _claimed(old, new, "ChangePin") as (old_buf, new_buf):
        try:
            app.card().change_pin(old_buf, new_buf, reference)
        except piv_errors.InvalidPin as exc:
            raise wrong_pin(exc.retries_left) from None
        except piv_errors.PinBlocked:
            raise errors.PinBlocked(
                "the PIN is blocked; it needs the PUK", retries_left=0
            ) from None
        except piv_errors.IncorrectData:
            raise errors.PinFormat("the card refused the new PIN's format") from None
    _forget_pin_status(app, reference)
    return retries


def unblock_pin(
    connection: Connection,
    puk: PinBuffer,
    new: PinBuffer,
    allow_last_puk_attempt: bool,
    session_id: str,
) -> int | None:
    """RESET RETRY COUNTER of the PIN with the PUK; the PUK retries known before it.

    Raises PukBlocked, LastPukAttempt (nothing sent), PukIncorrect (retries_left)
    or PinFormat.
    """
    app = session_app(connection, session_id)
    known = connection.state(PukState)
    before = known.retries_left
    if before == 0:
        raise errors.PukBlocked("the PUK is blocked", retries_left=0)
    if before == 1 and not allow_last_puk_attempt:
        raise errors.LastPukAttempt(
            "one PUK retry is left; set allow_last_puk_attempt to spend it", retries_left=1
        )
    with _claimed(puk, new, "UnblockPin") as (puk_buf, new_buf):
        try:
            app.card().unblock_pin(puk_buf, new_buf)
        except piv_errors.InvalidPin as exc:
            known.retries_left = exc.retries_left
            raise _wrong_puk(exc.retries_left) from None
        except piv_errors.PinBlocked:  # 6983 answers for the PUK here
            known.retries_left = 0
            raise errors.PukBlocked("the PUK is blocked", retries_left=0) from None
        except piv_errors.IncorrectData:
            raise errors.PinFormat("the card refused the PUK or the new PIN's format") from None
    known.retries_left = None  # a right PUK resets its counter to a value PIV does not report
    _forget_pin_status(app)
    return before


@contextlib.contextmanager
def _claimed(
    first: PinBuffer, second: PinBuffer, call: str
) -> Iterator[tuple[bytearray, bytearray]]:
    """Both secrets for the worker, wiped when the block ends; nothing is sent if the
    call was abandoned before the worker got here."""
    try:
        a, b = first.claim(), second.claim()
        if a is None or b is None:
            raise errors.CardError(f"the {call} call was abandoned before the card was asked")
        yield a, b
    finally:
        first.wipe()
        second.wipe()


def _forget_pin_status(app: PivApp, reference: int = PIN_REFERENCE_APPLICATION) -> None:
    """Make the card drop the PIN status a successful change may have set (best effort:
    SP 800-73-3 cards lack VERIFY P1=FF; the session's own record is void anyway)."""
    try:
        app.card().reset_pin_status(reference)
    except piv_errors.PivError as exc:
        log.debug("the card refused to reset the PIN status (SW %04X)", exc.sw)
    app.state.last_was_verify = False  # not a VERIFY that verified: no "PIN always" state


def _wrong_puk(retries_left: int | None) -> errors.HwgateError:
    if retries_left == 0:
        return errors.PukBlocked("wrong PUK; the PUK is now blocked", retries_left=0)
    if retries_left is None:  # 6300: the card did not say how many are left
        return errors.PukIncorrect("wrong PUK")
    return errors.PukIncorrect(f"wrong PUK, {retries_left} retries left", retries_left=retries_left)
