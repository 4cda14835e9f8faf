"""Key reference parsing (pure): labels, id:<hex>, RFC 7512 URIs."""

from __future__ import annotations

import pytest

from hwgated.hsm import InvalidArgument, KeyClass, KeyRef


def test_plain_label() -> None:
    ref = KeyRef.parse("issuing-ca")
    assert ref == KeyRef(label="issuing-ca")
    assert str(ref) == "issuing-ca"


def test_id_hex() -> None:
    assert KeyRef.parse("id:0A0b").id == b"\x0a\x0b"
    with pytest.raises(InvalidArgument):
        KeyRef.parse("id:xyz")


def test_uri_with_percent_encoding() -> None:
    ref = KeyRef.parse("pkcs11:token=hwgate%20test;object=my%2Fkey;id=%01%ff;type=private")
    assert ref.token == "hwgate test"
    assert ref.label == "my/key"
    assert ref.id == b"\x01\xff"
    assert ref.key_class is KeyClass.PRIVATE
    assert KeyRef.parse(ref.to_uri()) == ref


def test_uri_types() -> None:
    assert KeyRef.parse("pkcs11:object=a;type=secret-key").key_class is KeyClass.SECRET
    assert KeyRef.parse("pkcs11:object=a;type=public").key_class is KeyClass.PUBLIC
    assert KeyRef.parse("pkcs11:object=a;type=cert").key_class is KeyClass.CERTIFICATE


@pytest.mark.parametrize(
    "text",
    [
        "",
        "pkcs11:",
        "pkcs11:type=private",
        "pkcs11:object=a;type=bogus",
        "pkcs11:object=a;colour=red",
        "pkcs11:object=a;object=b",
        "pkcs11:object",
    ],
)
def test_bad_references(text: str) -> None:
    with pytest.raises(InvalidArgument):
        KeyRef.parse(text)


def test_pin_in_uri_is_refused_without_echoing_it() -> None:
    with pytest.raises(InvalidArgument) as info:
        KeyRef.parse("pkcs11:object=a?pin-value=123456")
    assert "123456" not in str(info.value)
