"""p11sign's context-specific login: which keys get ``pin=`` and what happens without one."""

from __future__ import annotations

from typing import Any

import pytest

from hwgated.hsm.errors import KeyUsageNotAllowed
from hwgated.hsm.p11keys import CURVES, FoundKey
from hwgated.hsm.p11sign import make_signer
from hwgated.hsm.types import KeyAlgorithm, KeyUsage, SignAlgorithm


class RecordingKey:
    """Stands in for a python-pkcs11 key: records the keywords of each sign call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def sign(self, data: bytes, **kw: Any) -> bytes:
        self.calls.append(kw)
        return b"\x01" * 64


def ec_key(always_authenticate: bool) -> tuple[FoundKey, RecordingKey]:
    obj = RecordingKey()
    found = FoundKey(obj, KeyAlgorithm.EC, CURVES[0], "k", frozenset({KeyUsage.SIGN}),
                     always_authenticate=always_authenticate)  # fmt: skip
    return found, obj


def test_always_authenticate_key_gets_the_pin_on_every_call() -> None:
    found, obj = ec_key(True)
    signer = make_signer(found, SignAlgorithm.ECDSA_SHA256, lambda: "1234")
    signer(b"\x00" * 32)
    signer(b"\x00" * 32)
    assert [c.get("pin") for c in obj.calls] == ["1234", "1234"]


def test_ordinary_key_never_sees_the_pin() -> None:
    found, obj = ec_key(False)
    make_signer(found, SignAlgorithm.ECDSA_SHA256, lambda: "1234")(b"\x00" * 32)
    assert "pin" not in obj.calls[0]


def test_always_authenticate_key_without_a_pin_is_refused_before_the_module() -> None:
    found, obj = ec_key(True)
    signer = make_signer(found, SignAlgorithm.ECDSA_SHA256, None)
    with pytest.raises(KeyUsageNotAllowed, match="context-specific login"):
        signer(b"\x00" * 32)
    assert obj.calls == []
