"""The bed escrows every card's Key Management (9D) key under the token's escrow-kek.

Checked against the token directly (python-pkcs11, not the daemon): RFC 5649 is
deterministic, so wrapping the card's own 9D key again under escrow-kek must
give exactly the recorded blob; that proves the record holds that key, wrapped
under that key-encryption key, without ever reading a plaintext back.
"""

from __future__ import annotations

import stat
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hwgate_testbed import cards, escrow, softhsm
from hwgate_testbed.vcard.profile import CardProfile, Slot

pytestmark = pytest.mark.testbed


def _record(testbed: Any, name: str) -> dict[str, Any]:
    profile = CardProfile.load(testbed.paths.card_dir(name))
    record = escrow.find_record(testbed.paths, guid=str(profile.guid))
    assert record is not None, f"{name} has no escrow record"
    return record


@pytest.mark.parametrize(
    ("name", "algorithm", "key_class"),
    [("alice", "KEY_ALGORITHM_EC_P256", ec.EllipticCurvePrivateKey),
     ("bob", "KEY_ALGORITHM_RSA_2048", rsa.RSAPrivateKey)],
)  # fmt: skip
def test_each_card_has_an_escrow_record_of_its_9d_key(
    testbed: Any, name: str, algorithm: str, key_class: type
) -> None:
    paths = testbed.paths
    profile = CardProfile.load(paths.card_dir(name))
    record = _record(testbed, name)
    km = profile.slots[Slot.KEY_MANAGEMENT]
    assert isinstance(km.key, key_class)
    assert (record["card"], record["slot"], record["key_algorithm"]) == (name, "9d", algorithm)
    assert (record["wrapping_key"], record["mechanism"]) == (
        "escrow-kek",
        "WRAP_MECHANISM_AES_KEY_WRAP_PAD",
    )
    cert = x509.load_pem_x509_certificate(record["certificate"].encode())
    assert cert == km.certificate
    assert escrow.find_record(paths, fascn=str(profile.fascn)) == record
    assert escrow.find_record(paths, fascn=profile.fascn.encode().hex()) == record
    mode = stat.S_IMODE(paths.escrow_file(record["guid"]).stat().st_mode)
    assert mode == 0o600


@pytest.mark.parametrize("name", ["alice", "bob"])
def test_the_blob_is_the_9d_key_wrapped_under_escrow_kek(testbed: Any, name: str) -> None:
    paths = testbed.paths
    key = CardProfile.load(paths.card_dir(name)).slots[Slot.KEY_MANAGEMENT].key
    template, _ = escrow.key_template(key)
    with softhsm.user_session(paths, rw=True) as session:
        again = escrow._wrap(session, template)
    assert again == escrow.wrapped_key(_record(testbed, name))


def test_escrow_is_idempotent_and_follows_new_cards(testbed: Any) -> None:
    paths = testbed.paths
    before = {r["guid"]: r["wrapped_key"] for r in escrow.records(paths)}
    cards.ensure_card(paths, "alice")  # existing: its record is kept as is
    assert {r["guid"]: r["wrapped_key"] for r in escrow.records(paths)} == before
    name = "escrow-newcard"
    cards.ensure_card(paths, name, "ecc")  # a new card is escrowed at provisioning
    record = _record(testbed, name)
    assert record["guid"] not in before and record["card"] == name
