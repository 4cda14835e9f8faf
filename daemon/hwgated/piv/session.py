"""The PIV application on one card connection (no I/O of its own).

``PivCard`` sends APDUs through a ``transmit`` callable supplied by the
transport (pyscard in the reader worker, a scripted fake in tests) and turns
answers into objects and typed errors. It keeps no card state besides what the
card itself keeps, so the caller decides when to SELECT and VERIFY.
"""

from __future__ import annotations

from . import commands
from .apdu import CommandApdu, Transmit, transceive
from .errors import InvalidPin, NotFound, check_sw, error_for_sw
from .objects import ApplicationPropertyTemplate, CertificateContainer, Chuid, Discovery
from .slots import Algorithm, Slot

TAG_CHUID = 0x5FC102
TAG_DISCOVERY = 0x7E
SW_BLOCKED = 0x6983


class PivCard:
    """PIV card-edge operations on a connection."""

    def __init__(self, transmit: Transmit) -> None:
        self._transmit = transmit

    def send(self, cmd: CommandApdu) -> bytes:
        """Exchange *cmd* (chaining, 61xx, 6Cxx handled); raise the SW's error; return data."""
        resp = transceive(self._transmit, cmd)
        check_sw(resp)
        return resp.data

    def select(self) -> ApplicationPropertyTemplate | None:
        """SELECT the PIV AID; the APT, or None when the card answers with no data."""
        data = self.send(commands.select_piv())
        return ApplicationPropertyTemplate.parse(data) if data else None

    def get_object(self, tag: int) -> bytes:
        """The data object as GET DATA returns it (``53 L …``); NotFound if absent."""
        return self.send(commands.get_data(tag))

    def read_chuid(self) -> Chuid:
        return Chuid.parse(self.get_object(TAG_CHUID))

    def read_certificate(self, slot: Slot) -> bytes | None:
        """DER certificate of *slot*, or None when the slot has no certificate object."""
        tag = slot.certificate_tag
        if tag is None:
            raise ValueError(f"slot {slot.name} has no certificate object")
        try:
            data = self.get_object(tag)
        except NotFound:
            return None
        return CertificateContainer.parse(data).certificate

    def read_discovery(self) -> Discovery | None:
        """The Discovery object, or None on cards without one (it is optional)."""
        try:
            return Discovery.parse(self.get_object(TAG_DISCOVERY))
        except NotFound:
            return None

    def pin_retries(self, reference: int = commands.PIN_REFERENCE_APPLICATION) -> int | None:
        """Retries left (0 when blocked), or None when the PIN is already verified."""
        resp = transceive(self._transmit, commands.verify_status(reference))
        if resp.sw == SW_BLOCKED:
            return 0
        error = error_for_sw(resp.sw)
        if error is None:
            return None
        if isinstance(error, InvalidPin) and error.retries_left is not None:
            return error.retries_left
        raise error

    def verify_pin(
        self, pin: bytearray, reference: int = commands.PIN_REFERENCE_APPLICATION
    ) -> None:
        """VERIFY; raises InvalidPin (retries_left) or PinBlocked. The padded copy is wiped.

        The caller owns *pin* and wipes it; this method never logs or keeps it.
        """
        cmd = commands.verify_pin(pin, reference)
        try:
            self.send(cmd)
        finally:
            cmd.wipe()

    def change_pin(
        self,
        old: bytearray,
        new: bytearray,
        reference: int = commands.PIN_REFERENCE_APPLICATION,
    ) -> None:
        """CHANGE REFERENCE DATA (PIN 80 or global 00); raises InvalidPin (retries_left)
        or PinBlocked.

        The caller owns both PINs and wipes them; the padded copy is wiped here.
        """
        cmd = commands.change_pin(old, new, reference)
        try:
            self.send(cmd)
        finally:
            cmd.wipe()

    def unblock_pin(self, puk: bytearray, new_pin: bytearray) -> None:
        """RESET RETRY COUNTER (PIN 80 with the PUK); raises InvalidPin (the PUK's
        retries_left) or PinBlocked (the PUK is). The caller wipes both secrets."""
        cmd = commands.reset_retry_counter(puk, new_pin)
        try:
            self.send(cmd)
        finally:
            cmd.wipe()

    def reset_pin_status(self, reference: int = commands.PIN_REFERENCE_APPLICATION) -> None:
        """VERIFY P1=FF: the card drops the PIN's verified status (PivError if unsupported)."""
        self.send(commands.reset_pin_status(reference))

    def sign_raw(self, slot: Slot, algorithm: Algorithm, block: bytes) -> bytes:
        """Card operation on a prepared block (see :mod:`signing`); the signature bytes."""
        data = self.send(commands.general_authenticate(slot, algorithm, block))
        return commands.parse_general_authenticate(data)

    def ecdh(self, slot: Slot, algorithm: Algorithm, peer_point: bytes) -> bytes:
        """Shared secret (x-coordinate) with *peer_point*, an uncompressed EC point."""
        data = self.send(commands.ecdh(slot, algorithm, peer_point))
        return commands.parse_general_authenticate(data)
