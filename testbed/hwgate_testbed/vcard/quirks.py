"""Quirk profiles: how a real card differs from the textbook, chosen per insertion.

A card's *content* (keys, certificates, FASC-N, PIN) is provisioned once into
its directory; a quirk profile changes how that content is *served* for one
insertion (``python -m hwgate_testbed.vcard --profile NAME``, or
``hwgate-testbed insert --profile NAME``), so the same card can be inserted
plain in one test and quirky in the next without re-provisioning. A profile
that needs other key material (a P-384 PIV Authentication key, RSA keys on an
ECC card, an expired certificate) gets it once per card, issued by the same
test CA, into ``CARD_DIR/quirks/NAME`` (:mod:`.quirk_material`). The quirks are
written from what real cards and applets do, never from what the daemon's
parsers expect (this package imports nothing from hwgated).

T=0 and vpcd: vpcd forwards whole APDUs and ignores the protocol parameters
pcscd sets, so a "T=0 only" card here is as close as vpcd allows: its ATR
offers T=0 alone (pcscd then connects with T=0 and ``SCardTransmit`` takes the
T=0 PCI), and the card answers the way a T=0 card looks through a real reader
(the reader's TPDU layer drops Le from a case-4 command, so data only ever
comes back through ``61xx`` and GET RESPONSE; no extended lengths; a GET
RESPONSE asking for more than is left gets ``6Cxx``). The byte-level T=0
procedure bytes themselves never exist on vpcd's socket.
"""

from __future__ import annotations

from dataclasses import dataclass

from .profile import Slot

PLACEHOLDER_FASCN = bytes(25)  # 25 zero bytes: every character fails its odd-parity bit

KEY_RSA_2048 = "rsa-2048"
KEY_ECC_P384 = "ecc-p384"


@dataclass(frozen=True)
class Quirks:
    """One named set of deviations; the defaults serve the card as provisioned."""

    name: str
    description: str
    # CHUID tag 30 holds 25 zero bytes instead of the card's FASC-N (shipped by
    # some vendor cards and Java Card PIV applets that were never personalized
    # with one). GUID, expiry and the 3E signature stay as provisioned; the
    # signature then no longer matches the content, which a relying party
    # verifying it would notice (as it would on such a real card).
    placeholder_fascn: bool = False
    # The PIV applet is not installed at insertion: SELECT of the PIV AID answers
    # 6A82 (a blank Java Card, or one whose applet an issuance kiosk installs)
    # until a GlobalPlatform INSTALL [for install and make selectable]
    # (CLA 80, INS E6, P1 0C) naming the PIV AID arrives; from then on, for the
    # rest of the insertion, the card is a PIV card like any other.
    piv_after_install: bool = False
    # No PIV application at all, for the whole insertion (another card type in
    # the reader: a bank card, a transit card): SELECT PIV answers 6A82.
    never_piv: bool = False
    # False: the CHUID's 3E is empty (`3E 00`), as yubico-piv-tool writes it.
    chuid_signed: bool = True
    # GET DATA of the CHUID / the Discovery object answers 6A82.
    omit_chuid: bool = False
    omit_discovery: bool = False
    # Key references with neither a key nor a certificate object on the card.
    absent_slots: frozenset[Slot] = frozenset()
    # None: certificates as provisioned (9D gzip'd, the others plain); True: every
    # one gzip'd (CertInfo 01); False: none compressed (CertInfo 00).
    compress_certificates: bool | None = None
    # Other keys than provisioned: (slot, KEY_*) pairs, with certificates from
    # the test CA (material, see quirk_material). A slot whose provisioned key
    # already is of that kind keeps it.
    slot_keys: tuple[tuple[Slot, str], ...] = ()
    # The APT offers RSA-2048 alone (with slot_keys making every key RSA).
    rsa_only: bool = False
    # Slots whose certificate is re-issued for the same key, already expired.
    expired_slots: frozenset[Slot] = frozenset()
    # Discovery says PIV PIN + global PIN, global PIN primary (5F2F 60 20). The
    # cardholder's PIN is then the *global* PIN (VERIFY P2 00); the PIV
    # application PIN (80) is a different one the cardholder was never told.
    global_pin_primary: bool = False
    # T=0 only (see the module doc).
    t0_only: bool = False
    # At most this many response bytes per answer (61xx says how many are left,
    # at most this many again): cards that never send 256 at once.
    response_chunk: int | None = None
    # The card insists on the exact Le: when it has up to 256 bytes ready and Le
    # is anything else (00 included), it answers 6Cxx (xx = what it has) and
    # keeps the answer for the same command repeated with Le = xx.
    exact_le: bool = False

    @property
    def needs_material(self) -> bool:
        """True when serving this profile takes keys or certificates not provisioned."""
        return bool(self.slot_keys or self.expired_slots)


STANDARD = Quirks("standard", "the card exactly as provisioned")
APPLICATION_PIN_OF_GLOBAL_PIN_CARDS = "24681357"  # the PIV PIN the cardholder never learns

PROFILES: dict[str, Quirks] = {
    quirks.name: quirks
    for quirks in (
        STANDARD,
        Quirks(
            "zero-fascn",
            "CHUID with an all-zero placeholder FASC-N (25 zero bytes)",
            placeholder_fascn=True,
        ),
        Quirks(
            "piv-after-install",
            "no PIV application (SELECT -> 6A82) until a GlobalPlatform INSTALL names it",
            piv_after_install=True,
        ),
        Quirks("not-piv", "no PIV application at all (SELECT PIV -> 6A82)", never_piv=True),
        Quirks("unsigned-chuid", "CHUID without an issuer signature (3E 00)", chuid_signed=False),
        Quirks("no-discovery", "no Discovery object (GET DATA 7E -> 6A82)", omit_discovery=True),
        Quirks("no-chuid", "no CHUID (GET DATA 5FC102 -> 6A82)", omit_chuid=True),
        Quirks(
            "p384-auth",
            "PIV Authentication key (9A) on P-384",
            slot_keys=((Slot.AUTHENTICATION, KEY_ECC_P384),),
        ),
        Quirks(
            "rsa-only",
            "RSA-2048 keys in every slot, only RSA in the APT",
            slot_keys=tuple((slot, KEY_RSA_2048) for slot in Slot),
            rsa_only=True,
        ),
        Quirks(
            "certs-plain",
            "every certificate uncompressed (CertInfo 00)",
            compress_certificates=False,
        ),
        Quirks(
            "certs-gzip",
            "every certificate gzip-compressed (CertInfo 01)",
            compress_certificates=True,
        ),
        Quirks(
            "chunked-255", "answers in 255-byte chunks (61xx, GET RESPONSE)", response_chunk=255
        ),
        Quirks("wrong-le", "6Cxx unless Le is exactly the length of the answer", exact_le=True),
        Quirks(
            "t0", "T=0 only: ATR offers T=0, data only through 61xx / GET RESPONSE", t0_only=True
        ),
        Quirks(
            "no-9e",
            "no Card Authentication key or certificate (9E)",
            absent_slots=frozenset({Slot.CARD_AUTH}),
        ),
        Quirks(
            "expired-9a",
            "PIV Authentication certificate (9A) expired",
            expired_slots=frozenset({Slot.AUTHENTICATION}),
        ),
        Quirks(
            "global-pin",
            "Discovery: global PIN primary (5F2F 60 20); the cardholder's PIN is the global PIN",
            global_pin_primary=True,
        ),
    )
}


def quirk_profile(name: str | None) -> Quirks:
    """The profile called *name* (None: standard); ValueError for an unknown name."""
    if name is None:
        return STANDARD
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown card profile {name!r}; known: {', '.join(PROFILES)}") from None
