"""The test bed's SoftHSM2 token holds the seven keys hwgate's flows need, with the
types and attributes the daemon and its policy rely on."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pkcs11
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import (
    encode_ec_public_key,
    encode_ecdsa_signature,
    encode_named_curve_parameters,
)

from hwgate_testbed import softhsm
from hwgate_testbed.pytest_plugin import Testbed

pytestmark = pytest.mark.testbed

P256 = encode_named_curve_parameters("secp256r1")


@pytest.fixture(scope="module")
def session(testbed: Testbed) -> Iterator[pkcs11.Session]:
    with softhsm.user_session(testbed.paths) as s:
        yield s


def _key(session: pkcs11.Session, cls: ObjectClass, label: str) -> Any:
    found = list(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: label}))
    assert len(found) == 1, f"{len(found)} {cls.name} objects labelled {label}"
    return found[0]


def _labels(session: pkcs11.Session, cls: ObjectClass) -> dict[str, bytes]:
    objs = session.get_objects({Attribute.CLASS: cls})
    return {o[Attribute.LABEL]: bytes(o[Attribute.ID]) for o in objs}


def test_token_holds_exactly_the_seven_keys_with_ids(session: pkcs11.Session) -> None:
    private = _labels(session, ObjectClass.PRIVATE_KEY)
    public = _labels(session, ObjectClass.PUBLIC_KEY)
    secret = _labels(session, ObjectClass.SECRET_KEY)
    pairs = {"issuing-ca": b"\x01", "signer-p256": b"\x02", "signer-rsa": b"\x03",
             "ecdh-p256": b"\x04"}  # fmt: skip
    assert private == pairs
    assert public == pairs  # each pair shares CKA_ID and CKA_LABEL
    assert secret == {"activation-master": b"\x05", "hmac-key": b"\x06", "escrow-kek": b"\x07"}


@pytest.mark.parametrize(
    ("label", "cls", "key_type", "expect"),
    [
        ("issuing-ca", ObjectClass.PRIVATE_KEY, KeyType.RSA, {Attribute.SIGN: True}),
        ("signer-rsa", ObjectClass.PRIVATE_KEY, KeyType.RSA, {Attribute.SIGN: True}),
        ("signer-p256", ObjectClass.PRIVATE_KEY, KeyType.EC,
         {Attribute.SIGN: True, Attribute.DERIVE: False}),
        ("ecdh-p256", ObjectClass.PRIVATE_KEY, KeyType.EC,
         {Attribute.DERIVE: True, Attribute.SIGN: False}),
        ("activation-master", ObjectClass.SECRET_KEY, KeyType.AES,
         {Attribute.VALUE_LEN: 32, Attribute.DERIVE: True, Attribute.ENCRYPT: False,
          Attribute.DECRYPT: False, Attribute.SIGN: False, Attribute.WRAP: False}),
        ("hmac-key", ObjectClass.SECRET_KEY, KeyType.GENERIC_SECRET,
         {Attribute.VALUE_LEN: 32, Attribute.SIGN: True, Attribute.VERIFY: True,
          Attribute.DERIVE: False}),
        ("escrow-kek", ObjectClass.SECRET_KEY, KeyType.AES,
         {Attribute.VALUE_LEN: 32, Attribute.WRAP: True, Attribute.UNWRAP: True,
          Attribute.ENCRYPT: False, Attribute.DECRYPT: False, Attribute.DERIVE: False,
          Attribute.SIGN: False, Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True}),
    ],
)  # fmt: skip
def test_key_type_and_attributes(
    session: pkcs11.Session,
    label: str,
    cls: ObjectClass,
    key_type: KeyType,
    expect: dict[Attribute, Any],
) -> None:
    key = _key(session, cls, label)
    assert key[Attribute.KEY_TYPE] == key_type
    assert key[Attribute.TOKEN] is True
    assert key[Attribute.SENSITIVE] is True
    assert key[Attribute.EXTRACTABLE] is False
    assert {a: key[a] for a in expect} == expect


@pytest.mark.parametrize(("label", "bits"), [("issuing-ca", 3072), ("signer-rsa", 2048)])
def test_rsa_key_sizes(session: pkcs11.Session, label: str, bits: int) -> None:
    pub = _key(session, ObjectClass.PUBLIC_KEY, label)
    assert int.from_bytes(pub[Attribute.MODULUS], "big").bit_length() == bits


@pytest.mark.parametrize("label", ["signer-p256", "ecdh-p256"])
def test_ec_keys_are_p256(session: pkcs11.Session, label: str) -> None:
    assert _key(session, ObjectClass.PUBLIC_KEY, label)[Attribute.EC_PARAMS] == P256


def test_activation_master_value_cannot_be_read(session: pkcs11.Session) -> None:
    key = _key(session, ObjectClass.SECRET_KEY, "activation-master")
    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        key[Attribute.VALUE]


def test_signer_p256_signature_verifies_with_cryptography(session: pkcs11.Session) -> None:
    priv = _key(session, ObjectClass.PRIVATE_KEY, "signer-p256")
    pub_der = encode_ec_public_key(_key(session, ObjectClass.PUBLIC_KEY, "signer-p256"))
    public = serialization.load_der_public_key(pub_der)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    message = b"derived PIV credential activation"
    raw = priv.sign(hashlib.sha256(message).digest(), mechanism=Mechanism.ECDSA)
    signature = encode_ecdsa_signature(raw)
    public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(signature, message + b"!", ec.ECDSA(hashes.SHA256()))


def test_hmac_key_signs_and_verifies_sha256_hmac(session: pkcs11.Session) -> None:
    key = _key(session, ObjectClass.SECRET_KEY, "hmac-key")
    mac = key.sign(b"challenge", mechanism=Mechanism.SHA256_HMAC)
    assert len(mac) == 32
    assert key.sign(b"challenge", mechanism=Mechanism.SHA256_HMAC) == mac
    assert key.verify(b"challenge", mac, mechanism=Mechanism.SHA256_HMAC)
    assert not key.verify(b"challengE", mac, mechanism=Mechanism.SHA256_HMAC)


def test_issuing_ca_certificate_is_a_self_signed_ca_for_the_token_key(
    session: pkcs11.Session, testbed: Testbed
) -> None:
    obj = _key(session, ObjectClass.CERTIFICATE, "issuing-ca")
    assert bytes(obj[Attribute.ID]) == b"\x01"
    cert = x509.load_der_x509_certificate(bytes(obj[Attribute.VALUE]))
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    cert.verify_directly_issued_by(cert)
    modulus = _key(session, ObjectClass.PUBLIC_KEY, "issuing-ca")[Attribute.MODULUS]
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers().n == int.from_bytes(modulus, "big")
    exported = x509.load_pem_x509_certificate(testbed.paths.pki_cert("issuing-ca").read_bytes())
    assert exported == cert


def test_provisioning_again_reuses_the_token(session: pkcs11.Session, testbed: Testbed) -> None:
    before = _labels(session, ObjectClass.PRIVATE_KEY) | _labels(session, ObjectClass.SECRET_KEY)
    pin_before = testbed.paths.user_pin.read_bytes()
    # another process: a second login from this one would clash with `session`
    code = (
        "import sys; from hwgate_testbed.softhsm import provision_token; "
        "provision_token(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(testbed.root)], check=True, timeout=60)
    after = _labels(session, ObjectClass.PRIVATE_KEY) | _labels(session, ObjectClass.SECRET_KEY)
    assert after == before
    assert len(list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}))) == 1
    assert testbed.paths.user_pin.read_bytes() == pin_before
