"""The PIV PIN on a session's card: VERIFY with the last-retry guard, and the session's PIN record.

Runs on the reader's worker thread (as a ``CardManager.run`` job). The retry
counter is read with an empty VERIFY before every real one, so the daemon
knows when exactly one retry is left and can refuse to spend it; it never
retries on its own. Every object GetCardInfo and Sign may need is read *before*
the VERIFY, so that a "PIN always" signature (9C) can follow it immediately.

Which PIN: the cardholder's, i.e. the PIV application PIN (key reference 80),
or the global PIN (00) when the card's Discovery object names the global PIN
primary (SP 800-73-4 part 1 §3.3.2; OpenSC does the same). On such a card the
application PIN may be one the cardholder was never given.

The session's PIN record lives in the insertion's ``PivState`` under the
session id: session ids are random and never reused, so a later session (after
the card reset that ends every session) never inherits it.
"""

from __future__ import annotations

from hwgated import errors
from hwgated.pcsc.connection import Connection
from hwgated.piv import errors as piv_errors
from hwgated.piv.commands import PIN_REFERENCE_APPLICATION, PIN_REFERENCE_GLOBAL
from hwgated.piv.pinbuffer import PinBuffer
from hwgated.pivapp.app import PivApp
from hwgated.pivapp.cache import cached_discovery, warm_cache


def pin_reference(app: PivApp) -> int:
    """The key reference of the cardholder's PIN: 00 (global) when Discovery says the
    global PIN is primary, else 80 (PIV application PIN; also without Discovery)."""
    discovery = cached_discovery(app)
    if discovery is not None and discovery.global_pin_primary:
        return PIN_REFERENCE_GLOBAL
    return PIN_REFERENCE_APPLICATION


def session_pin_verified(app: PivApp, session_id: str) -> bool:
    """True when VerifyPin succeeded in this session and no VERIFY failed since."""
    return session_id in app.state.pin_verified


def pin_required(app: PivApp, session_id: str, message: str) -> errors.PinRequired:
    """PIN_REQUIRED with *message*; when another program reset the card after this
    session's VerifyPin (shared mode), it says so (``cause = "card_reset"``): the
    client learns why its verified PIN is gone."""
    if session_id in app.state.pin_lost:
        return errors.PinRequired(
            "another program reset the card since VerifyPin in this session; verify the PIN again",
            cause="card_reset",
        )
    return errors.PinRequired(message)


def pin_always_armed(app: PivApp, session_id: str) -> bool:
    """True when the session's previous card command was its successful VERIFY.

    This is the state a "PIN always" key (9C) needs; any other APDU ends it.
    """
    return app.last_was_verify() and session_pin_verified(app, session_id)


def verify_pin(
    connection: Connection, pin: PinBuffer, allow_last_attempt: bool, session_id: str
) -> int | None:
    """VERIFY the application PIN; returns the retries that were left before it.

    Raises PinBlocked, LastPinAttempt (nothing sent), PinIncorrect (retries_left)
    or PinFormat. A card pulled meanwhile surfaces as the worker's CardRemoved.
    """
    app = session_app(connection, session_id)
    warm_cache(app)
    retries = guarded_pin_retries(app, allow_last_attempt)
    _send_verify(app, pin)
    app.state.pin_verified.add(session_id)
    return retries


def session_app(connection: Connection, session_id: str) -> PivApp:
    """The PIV application on a session's card, with the session's PIN record void:
    whatever a PIN operation does next, the old record no longer holds."""
    app = PivApp(connection)
    app.require_piv()
    app.state.pin_verified.discard(session_id)
    app.state.pin_lost.discard(session_id)
    return app


def guarded_pin_retries(app: PivApp, allow_last_attempt: bool) -> int | None:
    """The PIN retries left (empty VERIFY), refusing before anything that could spend
    one: PIN_BLOCKED at 0, LAST_PIN_ATTEMPT at 1 unless *allow_last_attempt*."""
    retries = app.card().pin_retries(pin_reference(app))
    if retries == 0:
        raise errors.PinBlocked("the PIN is blocked; it needs the PUK", retries_left=0)
    if retries == 1 and not allow_last_attempt:
        raise errors.LastPinAttempt(
            "one PIN retry is left; set allow_last_attempt to spend it", retries_left=1
        )
    return retries


def _send_verify(app: PivApp, pin: PinBuffer) -> None:
    reference = pin_reference(app)
    buf = pin.claim()
    if buf is None:  # the call ended before the worker got here: send nothing
        raise errors.CardError("the VerifyPin call was abandoned before the card was asked")
    try:
        app.card().verify_pin(buf, reference)
    except piv_errors.InvalidPin as exc:
        raise wrong_pin(exc.retries_left) from None
    except piv_errors.PinBlocked:
        raise errors.PinBlocked("the PIN is blocked; it needs the PUK", retries_left=0) from None
    except piv_errors.IncorrectData:
        raise errors.PinFormat("the card refused the PIN's format") from None
    finally:
        pin.wipe()


def wrong_pin(retries_left: int | None) -> errors.GatewayError:
    if retries_left == 0:
        return errors.PinBlocked("wrong PIN; the PIN is now blocked", retries_left=0)
    if retries_left is None:  # 6300: the card did not say how many are left
        return errors.PinIncorrect("wrong PIN")
    return errors.PinIncorrect(f"wrong PIN, {retries_left} retries left", retries_left=retries_left)
