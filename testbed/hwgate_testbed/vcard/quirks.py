"""Quirk profiles: how a real card differs from the textbook, chosen per insertion.

A card's *content* (keys, certificates, FASC-N, PIN) is provisioned once into
its directory; a quirk profile changes how that content is *served* for one
insertion (``python -m hwgate_testbed.vcard --profile NAME``, or
``hwgate-testbed insert --profile NAME``), so the same card can be inserted
plain in one test and quirky in the next without re-provisioning. The quirks
are written from what real cards and applets do, never from what the daemon's
parsers expect (this package imports nothing from hwgated).
"""

from __future__ import annotations

from dataclasses import dataclass

PLACEHOLDER_FASCN = bytes(25)  # 25 zero bytes: every character fails its odd-parity bit


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


STANDARD = Quirks("standard", "the card exactly as provisioned")

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
