"""Provisioning of virtual PIV cards (profiles on disk), via the vcard package.

A card is provisioned once into DIR/cards/NAME and then inserted as often as
needed; the PIV test CA that signs every card lives in DIR/pki. Its Key
Management (9D) key is escrowed in the bed's token (DIR/escrow/GUID.json, see
``hwgate_testbed.escrow``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hwgate_testbed.paths import DEFAULT_CARDS, TestbedPaths

PROFILE_FILE = "card.json"  # written by vcard.profile.CardProfile.save
KEY_TYPES = ("rsa", "ecc")


class CardError(RuntimeError):
    """A card cannot be provisioned as asked."""


def is_provisioned(paths: TestbedPaths, name: str) -> bool:
    return (paths.card_dir(name) / PROFILE_FILE).is_file()


def provisioned_key_type(paths: TestbedPaths, name: str) -> str | None:
    """Key type of an existing card, or None if the card does not exist."""
    if not is_provisioned(paths, name):
        return None
    doc = json.loads((paths.card_dir(name) / PROFILE_FILE).read_text())
    return str(doc.get("key_type"))


def default_key_type(name: str) -> str:
    """alice is ECC and bob RSA (the documented defaults); new cards are ECC."""
    return DEFAULT_CARDS.get(name, "ecc")


def _vcard_function(name: str, *modules: str) -> Any:
    """Look `name` up in the first vcard module that defines it (the card package's
    layout was settling while this was written; this keeps the seam in one place)."""
    import importlib

    for module in modules:
        found = getattr(importlib.import_module(f"hwgate_testbed.vcard.{module}"), name, None)
        if found is not None:
            return found
    raise CardError(f"hwgate_testbed.vcard provides no {name}()")


def ensure_piv_ca(paths: TestbedPaths) -> Any:
    """The PIV test CA in DIR/pki (created on first use)."""
    return _vcard_function("ensure_piv_ca", "profile", "piv_ca")(paths.pki)


def ensure_piv_crl(paths: TestbedPaths) -> Path:
    """The PIV test CA's CRL, DIR/pki/piv-ca.crl (signed now if missing or due soon)."""
    from hwgate_testbed.vcard.piv_crl import ensure_crl

    return ensure_crl(paths.pki, ensure_piv_ca(paths))


def revoke_card(paths: TestbedPaths, name: str, reason: str, *, undo: bool = False) -> Path:
    """Put every certificate of card *name* on the PIV CA's CRL (or, *undo*, take it off)."""
    from hwgate_testbed.vcard import piv_crl

    if not is_provisioned(paths, name):
        raise CardError(f"no card {name!r} in {paths.cards}")
    serials = piv_crl.card_serials(paths.card_dir(name))
    ca = ensure_piv_ca(paths)
    if undo:
        return piv_crl.unrevoke(paths.pki, ca, serials)
    try:
        return piv_crl.revoke(paths.pki, ca, serials, reason)
    except ValueError as exc:
        raise CardError(str(exc)) from None


def ensure_card(paths: TestbedPaths, name: str, key_type: str | None = None) -> Path:
    """Provision card `name` unless it exists; return its directory.

    Asking for an existing card with a different key type is an error rather
    than a silent re-key: tests that hold its certificates would break.
    """
    if not name or "/" in name or name.startswith("."):
        raise CardError(f"bad card name {name!r}")
    wanted = key_type or default_key_type(name)
    if wanted not in KEY_TYPES:
        raise CardError(f"key type must be one of {KEY_TYPES}, not {wanted!r}")
    existing = provisioned_key_type(paths, name)
    if existing is not None:
        if key_type is not None and existing != key_type:
            raise CardError(f"card {name!r} exists with key type {existing}, not {key_type}")
    else:
        provision_card = _vcard_function("provision_card", "profile", "provision")
        provision_card(paths.card_dir(name), name, wanted, ensure_piv_ca(paths))
    _escrow(paths, name)
    return paths.card_dir(name)


def _escrow(paths: TestbedPaths, name: str) -> None:
    """Escrow the card's key-management key in the bed's token (once; see
    ``hwgate_testbed.escrow``), when the bed has a token."""
    from hwgate_testbed import escrow

    if escrow.token_ready(paths):
        escrow.ensure_escrowed(paths, paths.card_dir(name))


def list_cards(paths: TestbedPaths) -> list[str]:
    if not paths.cards.is_dir():
        return []
    return sorted(d.name for d in paths.cards.iterdir() if is_provisioned(paths, d.name))


def ensure_quirk_material(paths: TestbedPaths, name: str, profile: str | None) -> None:
    """Issue the keys/certificates quirk *profile* needs for card *name*, once
    (``hwgate_testbed.vcard.quirk_material``); nothing for most profiles."""
    from hwgate_testbed.vcard.quirk_material import ensure_material
    from hwgate_testbed.vcard.quirks import quirk_profile

    try:
        quirks = quirk_profile(profile)
    except ValueError as exc:
        raise CardError(str(exc)) from None
    if quirks.needs_material:
        ensure_material(paths.card_dir(name), quirks, ensure_piv_ca(paths))
