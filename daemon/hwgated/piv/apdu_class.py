"""What a raw APDU does to a card's security state, decided from its INS byte alone.

Raw ``Transmit`` is an administrator's tool. Without a separate permission a
caller may only send APDUs that read: anything that presents or changes a PIN,
uses or makes a key, or writes data objects would hand a kiosk client a raw
signing oracle and a PIN-guessing path that skips every VerifyPin guard.

The class ignores CLA on purpose. Command chaining (CLA bit 0x10), secure
messaging and logical-channel bits, proprietary classes (0x80-0xFE) and the
PC/SC pseudo-APDU class 0xFF all leave INS meaning the same thing to the card
or the reader driver, or meaning something hwgate cannot know; classifying by
CLA would open a bypass for each class variant. So the rule is an allowlist:
only INS values that read (SELECT, GET DATA, READ BINARY/RECORD, GET RESPONSE,
GET CHALLENGE) pass; every other INS is restricted, and the security INS
values PIV defines get a name for the audit log. The odd INS variants ISO
7816-4 defines for BER-TLV data (VERIFY 21, GENERAL AUTHENTICATE 86, ...) get
the same name as the even ones.

One exception: VERIFY with P1 = 00 and no data field is the standard status
query ("is the PIN verified, how many tries are left"). It spends no retry and
changes nothing, so it is a read.
"""

from __future__ import annotations

import enum

from hwgated.piv.apdu import CommandApdu


class ApduKind(enum.Enum):
    """What an APDU does; ``value`` is the audit name (``card.transmit.<value>``)."""

    READ = "read"
    VERIFY = "verify"
    CHANGE_REFERENCE_DATA = "change_reference_data"
    RESET_RETRY_COUNTER = "reset_retry_counter"
    GENERAL_AUTHENTICATE = "general_authenticate"
    GENERATE_KEY_PAIR = "generate_key_pair"
    PUT_DATA = "put_data"
    OTHER = "other"  # not known to only read: restricted as well

    @property
    def restricted(self) -> bool:
        return self is not ApduKind.READ

    @property
    def is_verify(self) -> bool:
        return self is ApduKind.VERIFY


# INS values that only read. Everything not listed here is restricted.
READ_INS = frozenset(
    {
        0xA4,  # SELECT
        0xCA,  # GET DATA (PC/SC pseudo-APDU FF CA: get UID)
        0xCB,  # GET DATA (BER-TLV; PIV's GET DATA)
        0xB0,  # READ BINARY
        0xB1,  # READ BINARY (BER-TLV)
        0xB2,  # READ RECORD
        0xB3,  # READ RECORD (BER-TLV)
        0xC0,  # GET RESPONSE
        0x84,  # GET CHALLENGE
    }
)

_NAMED: dict[int, ApduKind] = {
    0x20: ApduKind.VERIFY,
    0x21: ApduKind.VERIFY,
    0x24: ApduKind.CHANGE_REFERENCE_DATA,
    0x25: ApduKind.CHANGE_REFERENCE_DATA,
    0x2C: ApduKind.RESET_RETRY_COUNTER,
    0x2D: ApduKind.RESET_RETRY_COUNTER,
    0x86: ApduKind.GENERAL_AUTHENTICATE,
    0x87: ApduKind.GENERAL_AUTHENTICATE,
    0x46: ApduKind.GENERATE_KEY_PAIR,
    0x47: ApduKind.GENERATE_KEY_PAIR,
    0xDA: ApduKind.PUT_DATA,
    0xDB: ApduKind.PUT_DATA,
}

INS_VERIFY = 0x20


def is_status_query(command: CommandApdu) -> bool:
    """VERIFY P1=00 with no data field: reports the PIN status, spends no retry."""
    return command.ins in (0x20, 0x21) and command.p1 == 0x00 and not command.data


def classify(command: CommandApdu) -> ApduKind:
    """The kind of *command*, by INS regardless of CLA (see the module docstring)."""
    if command.ins in READ_INS or is_status_query(command):
        return ApduKind.READ
    return _NAMED.get(command.ins, ApduKind.OTHER)


def reference(command: CommandApdu) -> str:
    """The key or PIN reference an audited APDU names (P2; for GENERATE, the slot), as hex.

    Never the data field: for VERIFY and friends that is the PIN itself.
    """
    return f"{command.p2:02X}"
