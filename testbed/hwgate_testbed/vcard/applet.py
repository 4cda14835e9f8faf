"""A PIV card application (SP 800-73-4 part 2) as a pure state machine.

``PivApplet.process`` takes one command APDU and returns response data + SW; it
does no I/O and never raises, so the same object serves vpcd, unit tests and
fuzzing. State is what a real card keeps in RAM (security status, pending
response, command chain) and in EEPROM (PIN/PUK and their retry counters); the
latter lives only as long as this object, so a fresh applet is a fresh card.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging

from . import ber, keyops
from .apdu import (
    SW_AUTH_BLOCKED,
    SW_BYTES_REMAINING,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_INCORRECT_P1P2,
    SW_INS_NOT_SUPPORTED,
    SW_OK,
    SW_REF_NOT_FOUND,
    SW_SECURITY_NOT_SATISFIED,
    SW_VERIFY_FAILED,
    SW_WRONG_DATA,
    SW_WRONG_LE,
    SW_WRONG_LENGTH,
    CommandApdu,
    parse_command,
    sw_bytes,
)
from .objects import DEFAULT_ALGORITHMS, PIV_AID, application_property_template, build_objects
from .profile import CardProfile, Slot
from .quirks import APPLICATION_PIN_OF_GLOBAL_PIN_CARDS, STANDARD, Quirks

log = logging.getLogger(__name__)

INS_SELECT = 0xA4
INS_GET_DATA = 0xCB
INS_VERIFY = 0x20
INS_CHANGE_REFERENCE = 0x24
INS_RESET_RETRY = 0x2C
INS_GENERAL_AUTHENTICATE = 0x87
INS_GET_RESPONSE = 0xC0
CLA_GLOBAL_PLATFORM = 0x80
INS_INSTALL = 0xE6

REF_PIN = 0x80
REF_PUK = 0x81
REF_GLOBAL_PIN = 0x00

SW_CHAINING_NOT_SUPPORTED = 0x6884
SW_UNKNOWN_ERROR = 0x6F00

_MAX_SHORT_RESPONSE = 256
_MAX_EXTENDED_RESPONSE = 65536
_PIN_BLOCK = 8


class _Reply(Exception):
    """Internal shortcut: abandon the command and answer with this status word."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


def _pad_pin(pin: str) -> bytes:
    return pin.encode().ljust(_PIN_BLOCK, b"\xff")


def _well_formed_pin(block: bytes) -> bool:
    """6-8 ASCII digits, then FF padding to 8 bytes."""
    digits = block.rstrip(b"\xff")
    return 6 <= len(digits) <= _PIN_BLOCK and digits.isdigit() and digits.isascii()


def _retry_sw(tries_left: int) -> int:
    return SW_VERIFY_FAILED | min(tries_left, 0xF)


class PivApplet:
    """One virtual PIV card application; feed it APDUs with :meth:`process`."""

    def __init__(self, profile: CardProfile, quirks: Quirks = STANDARD) -> None:
        if quirks.absent_slots:
            kept = {s: c for s, c in profile.slots.items() if s not in quirks.absent_slots}
            profile = dataclasses.replace(profile, slots=kept)
        self._profile = profile
        self.quirks = quirks
        self._objects = build_objects(profile, quirks)
        self._apt = application_property_template(_algorithms(profile, quirks))
        self._pin = _pad_pin(profile.pin)
        self._puk = _pad_pin(profile.puk)
        self.pin_tries_left = profile.pin_retries
        self.puk_tries_left = profile.puk_retries
        # A global-PIN-primary card: the cardholder's PIN is the global PIN (00); the
        # PIV application PIN (80) is one the cardholder never learnt.
        self._global_pin: bytes | None = None
        self.global_pin_tries_left = 0
        if quirks.global_pin_primary:
            self._global_pin = self._pin
            self.global_pin_tries_left = profile.pin_retries
            self._pin = _pad_pin(APPLICATION_PIN_OF_GLOBAL_PIN_CARDS)
        self.piv_installed = not (quirks.piv_after_install or quirks.never_piv)
        self._selected = self.piv_installed  # PIV is the default-selected application
        self._pin_verified = False
        self._global_verified = False
        # exact_le: (command without Le, answer) kept after a 6Cxx for its repetition
        self._held: tuple[tuple[int, int, int, int, bytes], bytes] | None = None
        self._pin_always = False  # a VERIFY was the previous command (9C PIN Always)
        self._chain: tuple[int, int, int] | None = None  # (ins, p1, p2) of an open chain
        self._chain_data = b""
        self._chain_pin_always = False
        self._pending = b""  # response bytes waiting for GET RESPONSE

    # -- card events -----------------------------------------------------------------

    def power_on(self) -> None:
        """Cold start: security status gone, PIV default-selected (once installed)."""
        self._clear_volatile()
        self._selected = self.piv_installed

    def power_off(self) -> None:
        self._clear_volatile()

    def reset(self) -> None:
        """Warm reset: same as a power cycle for this card."""
        self.power_on()

    @property
    def pin_verified(self) -> bool:
        """The PIV access rule "PIN" holds: the application or the global PIN is verified."""
        return self._pin_verified or self._global_verified

    def _clear_volatile(self) -> None:
        self._pin_verified = False
        self._global_verified = False
        self._held = None
        self._pin_always = False
        self._chain = None
        self._chain_data = b""
        self._pending = b""

    # -- dispatch --------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with response data + SW; never raises."""
        try:
            return self._process(bytes(apdu))
        except Exception:  # a bug must not kill the card; tests fail on 6F00
            log.exception("internal error processing an APDU")
            self._clear_volatile()
            return sw_bytes(SW_UNKNOWN_ERROR)

    def _process(self, apdu: bytes) -> bytes:
        pin_always, self._pin_always = self._pin_always, False
        cmd = parse_command(apdu)
        if cmd is None:
            self._drop_chain()
            self._pending = b""
            return sw_bytes(SW_WRONG_LENGTH)
        if (cmd.cla, cmd.ins) == (CLA_GLOBAL_PLATFORM, INS_INSTALL):
            return sw_bytes(self._install(cmd))
        if cmd.cla & ~0x10:
            return sw_bytes(SW_CLA_NOT_SUPPORTED)
        if self.quirks.t0_only and cmd.extended:  # T=0 carries short APDUs only
            self._drop_chain()
            self._pending = b""
            return sw_bytes(SW_WRONG_LENGTH)
        held, self._held = self._held, None
        if held is not None and held[0] == _command_key(cmd) and cmd.ne == len(held[1]):
            return held[1] + sw_bytes(SW_OK)  # the repetition a 6Cxx asked for
        if cmd.ins == INS_GET_RESPONSE and not cmd.chained:
            return self._get_response(cmd)
        self._pending = b""
        try:
            data, pin_always = self._gather(cmd, pin_always)
            if data is None:
                return sw_bytes(SW_OK)  # a non-final chain part was buffered
            return self._respond(cmd, self._dispatch(cmd, data, pin_always))
        except _Reply as reply:
            return sw_bytes(reply.sw)

    def _gather(self, cmd: CommandApdu, pin_always: bool) -> tuple[bytes | None, bool]:
        """Command chaining: buffer non-final parts, return the whole data on the last."""
        key = (cmd.ins, cmd.p1, cmd.p2)
        if self._chain is not None and self._chain != key:
            self._drop_chain()  # an interrupted chain is rolled back
        if cmd.chained:
            if cmd.ins != INS_GENERAL_AUTHENTICATE:
                raise _Reply(SW_CHAINING_NOT_SUPPORTED)
            if self._chain is None:
                self._chain, self._chain_pin_always = key, pin_always
            self._chain_data += cmd.data
            self._pin_always = self._chain_pin_always  # chain parts keep PIN Always
            return None, pin_always
        if self._chain is None:
            return cmd.data, pin_always
        data, pin_always = self._chain_data + cmd.data, self._chain_pin_always
        self._drop_chain()
        return data, pin_always

    def _drop_chain(self) -> None:
        self._chain, self._chain_data, self._chain_pin_always = None, b"", False

    def _dispatch(self, cmd: CommandApdu, data: bytes, pin_always: bool) -> bytes:
        if cmd.ins == INS_SELECT:
            return self._select(cmd, data)
        if not self._selected:
            raise _Reply(SW_INS_NOT_SUPPORTED)
        if cmd.ins == INS_GET_DATA:
            return self._get_data(cmd, data)
        if cmd.ins == INS_VERIFY:
            return self._verify(cmd, data)
        if cmd.ins == INS_CHANGE_REFERENCE:
            return self._change_reference(cmd, data)
        if cmd.ins == INS_RESET_RETRY:
            return self._reset_retry(cmd, data)
        if cmd.ins == INS_GENERAL_AUTHENTICATE:
            return self._general_authenticate(cmd, data, pin_always)
        raise _Reply(SW_INS_NOT_SUPPORTED)

    # -- response chaining ------------------------------------------------------------

    def _respond(self, cmd: CommandApdu, data: bytes) -> bytes:
        """Send what fits in Ne (at most 256 for a short APDU) and keep the rest.

        Quirks: T=0 sends nothing with the command itself (61xx for all of it);
        exact Le (and T=0's GET RESPONSE asking for more than is left) gets 6Cxx;
        a chunking card sends at most ``response_chunk`` bytes per answer.
        """
        quirks = self.quirks
        if not data:
            return sw_bytes(SW_OK)
        get_response = cmd.ins == INS_GET_RESPONSE
        if quirks.t0_only and not get_response:
            self._pending = data
            return sw_bytes(SW_BYTES_REMAINING | (min(len(data), 256) & 0xFF))
        wanted = cmd.ne or _MAX_SHORT_RESPONSE
        if len(data) <= _MAX_SHORT_RESPONSE and (
            (quirks.exact_le and wanted != len(data)) or (quirks.t0_only and wanted > len(data))
        ):
            if get_response:
                self._pending = data  # asked for again with the right Le
            else:
                self._held = (_command_key(cmd), data)
            return sw_bytes(SW_WRONG_LE | (len(data) & 0xFF))
        limit = _MAX_EXTENDED_RESPONSE if cmd.extended else _MAX_SHORT_RESPONSE
        if cmd.ne:
            limit = min(limit, cmd.ne)
        chunk_max = quirks.response_chunk or _MAX_SHORT_RESPONSE
        limit = min(limit, quirks.response_chunk or limit)
        chunk, self._pending = data[:limit], data[limit:]
        if self._pending:
            left = min(len(self._pending), chunk_max) & 0xFF
            return chunk + sw_bytes(SW_BYTES_REMAINING | left)
        return chunk + sw_bytes(SW_OK)

    def _get_response(self, cmd: CommandApdu) -> bytes:
        if cmd.p1 or cmd.p2:
            self._pending = b""
            return sw_bytes(SW_INCORRECT_P1P2)
        if not self._pending:
            return sw_bytes(SW_CONDITIONS_NOT_SATISFIED)
        return self._respond(cmd, self._pending)

    # -- SELECT, GET DATA -----------------------------------------------------------------

    def _install(self, cmd: CommandApdu) -> int:
        """GlobalPlatform INSTALL [for install and make selectable] of the PIV applet
        (only on a card of the piv-after-install profile; a bare-bones stand-in: no
        secure channel, no load file, the PIV AID anywhere in the data)."""
        if not self.quirks.piv_after_install:
            return SW_CLA_NOT_SUPPORTED
        if cmd.p1 != 0x0C:
            return SW_INCORRECT_P1P2
        if PIV_AID[:9] not in cmd.data:
            return SW_WRONG_DATA
        self.piv_installed = True
        return SW_OK

    def _select(self, cmd: CommandApdu, aid: bytes) -> bytes:
        if cmd.p1 != 0x04 or cmd.p2 != 0x00:
            raise _Reply(SW_INCORRECT_P1P2)
        if len(aid) >= 5 and PIV_AID.startswith(aid) and self.piv_installed:
            self._selected = True  # reselecting PIV keeps the security status
            return self._apt
        self._selected = False
        self._clear_volatile()
        raise _Reply(SW_FILE_NOT_FOUND)

    def _get_data(self, cmd: CommandApdu, data: bytes) -> bytes:
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF):
            raise _Reply(SW_INCORRECT_P1P2)
        try:
            tag_list = ber.unwrap(0x5C, data)
        except ber.BerError:
            raise _Reply(SW_WRONG_DATA) from None
        if not 1 <= len(tag_list) <= 3:
            raise _Reply(SW_WRONG_DATA)
        found = self._objects.get(int.from_bytes(tag_list, "big"))
        if found is None:
            raise _Reply(SW_FILE_NOT_FOUND)
        return found

    # -- PIN -------------------------------------------------------------------------------

    def _verify(self, cmd: CommandApdu, data: bytes) -> bytes:
        if cmd.p1 not in (0x00, 0xFF):
            raise _Reply(SW_INCORRECT_P1P2)
        if cmd.p2 == REF_GLOBAL_PIN and self._global_pin is not None:
            return self._verify_global(cmd, data)
        if cmd.p2 != REF_PIN:
            raise _Reply(SW_REF_NOT_FOUND)
        if cmd.p1 == 0xFF:  # reset the PIN's security status
            if data:
                raise _Reply(SW_WRONG_DATA)
            self._pin_verified = False
            return b""
        if self.pin_tries_left == 0:
            raise _Reply(SW_AUTH_BLOCKED)
        if not data:  # status query
            if self._pin_verified:
                return b""
            raise _Reply(_retry_sw(self.pin_tries_left))
        self._check_pin(data)
        self._pin_always = True
        return b""

    def _verify_global(self, cmd: CommandApdu, data: bytes) -> bytes:
        """VERIFY of the global PIN (key reference 00), with its own retry counter."""
        if cmd.p1 == 0xFF:
            if data:
                raise _Reply(SW_WRONG_DATA)
            self._global_verified = False
            return b""
        if self.global_pin_tries_left == 0:
            raise _Reply(SW_AUTH_BLOCKED)
        if not data:
            if self._global_verified:
                return b""
            raise _Reply(_retry_sw(self.global_pin_tries_left))
        self._check_global_pin(data)
        self._pin_always = True
        return b""

    def _check_global_pin(self, block: bytes) -> None:
        if len(block) != _PIN_BLOCK or not _well_formed_pin(block):
            raise _Reply(SW_WRONG_DATA)
        assert self._global_pin is not None
        if not hmac.compare_digest(block, self._global_pin):
            self._global_verified = False
            self.global_pin_tries_left -= 1
            raise _Reply(_retry_sw(self.global_pin_tries_left))
        self.global_pin_tries_left = self._profile.pin_retries
        self._global_verified = True

    def _check_pin(self, block: bytes) -> None:
        """Compare one 8-byte PIN block, spending a retry when wrong."""
        if len(block) != _PIN_BLOCK or not _well_formed_pin(block):
            raise _Reply(SW_WRONG_DATA)
        if self.pin_tries_left == 0:
            raise _Reply(SW_AUTH_BLOCKED)
        if not hmac.compare_digest(block, self._pin):
            self._pin_verified = False
            self.pin_tries_left -= 1
            raise _Reply(_retry_sw(self.pin_tries_left))
        self.pin_tries_left = self._profile.pin_retries
        self._pin_verified = True

    def _check_puk(self, block: bytes) -> None:
        if self.puk_tries_left == 0:
            raise _Reply(SW_AUTH_BLOCKED)
        if not hmac.compare_digest(block, self._puk):
            self.puk_tries_left -= 1
            raise _Reply(_retry_sw(self.puk_tries_left))
        self.puk_tries_left = self._profile.puk_retries

    def _change_reference(self, cmd: CommandApdu, data: bytes) -> bytes:
        if cmd.p1 != 0x00:
            raise _Reply(SW_INCORRECT_P1P2)
        global_pin = cmd.p2 == REF_GLOBAL_PIN and self._global_pin is not None
        if cmd.p2 not in (REF_PIN, REF_PUK) and not global_pin:
            raise _Reply(SW_REF_NOT_FOUND)
        if len(data) != 2 * _PIN_BLOCK:
            raise _Reply(SW_WRONG_DATA)
        old, new = data[:_PIN_BLOCK], data[_PIN_BLOCK:]
        if global_pin:
            if not _well_formed_pin(new):
                raise _Reply(SW_WRONG_DATA)
            if self.global_pin_tries_left == 0:
                raise _Reply(SW_AUTH_BLOCKED)
            self._check_global_pin(old)
            self._global_pin = new
        elif cmd.p2 == REF_PIN:
            if not _well_formed_pin(new):
                raise _Reply(SW_WRONG_DATA)
            self._check_pin(old)
            self._pin = new
        else:
            self._check_puk(old)
            self._puk = new
        return b""

    def _reset_retry(self, cmd: CommandApdu, data: bytes) -> bytes:
        if cmd.p1 != 0x00:
            raise _Reply(SW_INCORRECT_P1P2)
        if cmd.p2 != REF_PIN:
            raise _Reply(SW_REF_NOT_FOUND)
        if len(data) != 2 * _PIN_BLOCK or not _well_formed_pin(data[_PIN_BLOCK:]):
            raise _Reply(SW_WRONG_DATA)
        self._check_puk(data[:_PIN_BLOCK])
        self._pin = data[_PIN_BLOCK:]
        self.pin_tries_left = self._profile.pin_retries
        return b""

    # -- GENERAL AUTHENTICATE ----------------------------------------------------------------

    def _general_authenticate(self, cmd: CommandApdu, data: bytes, pin_always: bool) -> bytes:
        try:
            slot = Slot(cmd.p2)
        except ValueError:
            raise _Reply(SW_INCORRECT_P1P2) from None  # 9B, retired keys: not on this card
        cred = self._profile.slots.get(slot)
        if cred is None:
            raise _Reply(SW_INCORRECT_P1P2)
        try:
            if cmd.p1 != keyops.algorithm_of(cred.key):
                raise _Reply(SW_INCORRECT_P1P2)
        except keyops.KeyOpError:
            raise _Reply(SW_INCORRECT_P1P2) from None
        self._check_access(slot, pin_always)
        template = self._parse_template(data)
        if template.get(0x82, b"x") != b"":
            raise _Reply(SW_WRONG_DATA)  # only "compute a response" requests are supported
        try:
            if 0x85 in template and slot is Slot.KEY_MANAGEMENT and 0x81 not in template:
                result = keyops.ecdh(cred.key, template[0x85])
            elif 0x81 in template and 0x85 not in template:
                result = keyops.sign(cred.key, template[0x81])
            else:
                raise _Reply(SW_WRONG_DATA)
        except keyops.KeyOpError:
            raise _Reply(SW_WRONG_DATA) from None
        return ber.tlv(0x7C, ber.tlv(0x82, result))

    def _check_access(self, slot: Slot, pin_always: bool) -> None:
        """9E: always; 9A/9D: PIN; 9C: PIN verified by the command right before."""
        if slot is Slot.CARD_AUTH:
            return
        allowed = self.pin_verified and (pin_always or slot is not Slot.SIGNATURE)
        if not allowed:
            raise _Reply(SW_SECURITY_NOT_SATISFIED)

    @staticmethod
    def _parse_template(data: bytes) -> dict[int, bytes]:
        try:
            return ber.decode_template(ber.unwrap(0x7C, data))
        except ber.BerError:
            raise _Reply(SW_WRONG_DATA) from None


def _command_key(cmd: CommandApdu) -> tuple[int, int, int, int, bytes]:
    """A command without its Le: what its repetition after a 6Cxx must match."""
    return (cmd.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data)


def _algorithms(profile: CardProfile, quirks: Quirks) -> tuple[int, ...]:
    """The APT's algorithm ids: RSA-2048 and P-256 plus whatever the keys need (P-384);
    RSA-2048 alone on an RSA-only card."""
    if quirks.rsa_only:
        return (keyops.ALG_RSA_2048,)
    found = set(DEFAULT_ALGORITHMS)
    for cred in profile.slots.values():
        try:
            found.add(keyops.algorithm_of(cred.key))
        except keyops.KeyOpError:
            continue
    return tuple(sorted(found))
