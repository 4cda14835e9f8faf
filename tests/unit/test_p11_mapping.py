"""The CKR_* table and the key templates, without a token (issue #19 items 2 and 3).

Every exception class python-pkcs11 can raise has one entry: an ErrorReason and
whether the worker is unusable after it. Only session, login or device loss
costs a worker; anything else (notably CKR_GENERAL_ERROR, tpm2-pkcs11's answer to
a template it dislikes) is a permanent error for that one request.

Templates: what python-pkcs11 finally sends for a keygen request carries TRUE for
each usage asked for and no usage flag the caller did not ask for (python-pkcs11
writes an explicit FALSE for every flag left out of ``capabilities``, which
tpm2-pkcs11 rejects).
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from pkcs11 import Attribute, KeyType
from pkcs11 import exceptions as p11
from pkcs11._pkcs11 import merge_templates
from pkcs11.attributes import AttributeMapper

from hwgated.edge.status import REASON_CODES
from hwgated.hsm import p11manage
from hwgated.hsm.errors import (
    AlgorithmMismatch,
    HsmError,
    HsmUnavailable,
    InvalidArgument,
    KeyNotFound,
    KeyUsageNotAllowed,
    MechanismNotSupported,
)
from hwgated.hsm.p11errors import CKR_TABLE, is_fatal, translate
from hwgated.hsm.types import KeyPairSpec, KeyUsage, SecretKeySpec

ALL_CLASSES = sorted(
    (
        cls
        for cls in vars(p11).values()
        if inspect.isclass(cls) and issubclass(cls, p11.PKCS11Error) and cls is not p11.PKCS11Error
    ),
    key=lambda c: c.__name__,
)
# The only failures after which a worker's session is useless, and why (p11errors.py).
FATAL = {
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.DeviceRemoved,
    p11.DeviceError,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.UserNotLoggedIn,
}
EXPECTED = {
    p11.GeneralError: HsmError,
    p11.FunctionFailed: HsmError,
    p11.DeviceMemory: HsmError,
    p11.TemplateInconsistent: InvalidArgument,
    p11.AttributeValueInvalid: InvalidArgument,
    p11.MechanismInvalid: MechanismNotSupported,
    p11.FunctionNotSupported: MechanismNotSupported,
    p11.KeyTypeInconsistent: AlgorithmMismatch,
    p11.NoSuchKey: KeyNotFound,
    p11.KeyUnextractable: KeyUsageNotAllowed,
    p11.SessionHandleInvalid: HsmUnavailable,
    p11.DeviceRemoved: HsmUnavailable,
}


def test_every_python_pkcs11_error_has_an_entry() -> None:
    assert set(ALL_CLASSES) == set(CKR_TABLE)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_each_entry_maps_to_a_reason_and_a_worker_verdict(cls: type[p11.PKCS11Error]) -> None:
    error = translate(cls())
    assert error.reason in REASON_CODES
    assert isinstance(error, CKR_TABLE[cls].error)
    assert is_fatal(cls()) is (cls in FATAL)
    # Fatal means "retry on a fresh worker": it must say UNAVAILABLE, never a permanent
    # reason; a permanent error must not tell the caller to retry.
    assert (error.reason == "HSM_UNAVAILABLE") >= (cls in FATAL)
    if cls in EXPECTED:
        assert type(error) is EXPECTED[cls]
    assert cls.__name__ in error.message  # the CKR name, and nothing from the request


def test_general_error_is_permanent_and_keeps_the_worker() -> None:
    error = translate(p11.GeneralError())
    assert (error.reason, error.fields) == ("HSM_ERROR", {"ckr": "GeneralError"})
    assert not is_fatal(p11.GeneralError())


def test_codes_python_pkcs11_raises_bare() -> None:
    not_init = p11.PKCS11Error("Initialisation error (not initialized). Should never see this.")
    assert is_fatal(not_init) and translate(not_init).reason == "HSM_UNAVAILABLE"
    assert "CKR_CRYPTOKI_NOT_INITIALIZED" in translate(not_init).message
    already = p11.PKCS11Error("Initialisation error (already initialized). Should never see this.")
    assert not is_fatal(already) and translate(already).reason == "HSM_ERROR"
    not_permitted = p11.PKCS11Error("Unmapped error code 0x68")  # CKR_KEY_FUNCTION_NOT_PERMITTED
    assert translate(not_permitted).reason == "KEY_USAGE_NOT_ALLOWED"
    assert not is_fatal(not_permitted)


def test_unknown_errors_are_hsm_error_and_keep_the_worker() -> None:
    class VendorError(p11.PKCS11Error):
        pass

    for exc in (
        VendorError(),
        p11.PKCS11Error("Unmapped error code 0x80000123"),
        p11.PKCS11Error("Buffer was too small. Should never see this."),
    ):
        assert translate(exc).reason == "HSM_ERROR"
        assert not is_fatal(exc)
    assert translate(p11.PKCS11Error("Unmapped error code 0x80000123")).fields == {
        "ckr": "CKR 0x80000123"
    }
    assert not is_fatal(RuntimeError("not a PKCS#11 error"))


# -- templates -----------------------------------------------------------------------

USAGE_ATTRS = {
    Attribute.SIGN,
    Attribute.VERIFY,
    Attribute.DERIVE,
    Attribute.ENCRYPT,
    Attribute.DECRYPT,
    Attribute.WRAP,
    Attribute.UNWRAP,
}
ATTR_OF = {u: getattr(Attribute, u.name) for u in KeyUsage}
USAGE_SETS = [
    (KeyUsage.SIGN,),
    (KeyUsage.DERIVE,),
    (KeyUsage.SIGN, KeyUsage.VERIFY),
    (KeyUsage.VERIFY,),
    (KeyUsage.ENCRYPT, KeyUsage.DECRYPT),
    (KeyUsage.WRAP, KeyUsage.UNWRAP),
    (KeyUsage.SIGN, KeyUsage.DERIVE, KeyUsage.DECRYPT),
    (),
]


class _Sent(Exception):
    """Raised by the recording session once generate_* was called."""


class _RecordingSession:
    """Records what p11manage hands python-pkcs11 and rebuilds the template python-pkcs11
    would send with it (its own AttributeMapper and merge_templates)."""

    def __init__(self) -> None:
        self.sent: list[dict[Attribute, Any]] = []
        self.mapper = AttributeMapper()

    def _common(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return dict(
            capabilities=kwargs["capabilities"],
            id_=kwargs["id"],
            label=kwargs["label"],
            store=kwargs["store"],
        )

    def generate_keypair(self, *args: Any, **kwargs: Any) -> Any:
        common = self._common(kwargs)
        self.sent.append(
            merge_templates(self.mapper.public_key_template(**common), kwargs["public_template"])
            if "public_template" in kwargs
            else self.mapper.public_key_template(**common)
        )
        self.sent.append(
            merge_templates(
                self.mapper.private_key_template(**common), kwargs.get("private_template")
            )
        )
        raise _Sent

    def create_domain_parameters(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def generate_key(self, key_type: KeyType, bits: int, **kwargs: Any) -> Any:
        common = self._common(kwargs)
        template = self.mapper.secret_key_template(**common)
        self.sent.append(merge_templates(template, kwargs.get("template")))
        raise _Sent


class _EmptyStore:
    def label_taken(self, label: str) -> bool:
        return False

    def invalidate(self) -> None:
        pass


def _usage_flags(template: dict[Attribute, Any]) -> dict[Attribute, Any]:
    return {a: v for a, v in template.items() if a in USAGE_ATTRS}


@pytest.mark.parametrize("spec", [KeyPairSpec.EC_P256, KeyPairSpec.RSA2048])
@pytest.mark.parametrize("usages", USAGE_SETS, ids=lambda u: "+".join(x.value for x in u))
def test_pair_templates_carry_only_asked_usages(
    spec: KeyPairSpec, usages: tuple[KeyUsage, ...]
) -> None:
    session = _RecordingSession()
    with pytest.raises(_Sent):
        p11manage.generate_key_pair(
            session,
            _EmptyStore(),
            "k",
            spec,
            b"\x01",
            usages,
            True,  # type: ignore[arg-type]
        )
    public, private = (_usage_flags(t) for t in session.sent)
    assert all(v is True for v in (*public.values(), *private.values())), (public, private)
    implied = {KeyUsage.SIGN: KeyUsage.VERIFY, KeyUsage.DECRYPT: KeyUsage.ENCRYPT}
    implied[KeyUsage.UNWRAP] = KeyUsage.WRAP
    wanted = set(usages) | {implied[u] for u in usages if u in implied}
    assert set(public) | set(private) == {ATTR_OF[u] for u in wanted}
    # Each half carries only the flags PKCS#11 defines for its class.
    assert set(public) <= {Attribute.VERIFY, Attribute.ENCRYPT, Attribute.WRAP}
    # Private keys stay sensitive and never extractable.
    assert (session.sent[1][Attribute.SENSITIVE], session.sent[1][Attribute.EXTRACTABLE]) == (
        True,
        False,
    )


@pytest.mark.parametrize("spec", list(SecretKeySpec))
@pytest.mark.parametrize("usages", USAGE_SETS, ids=lambda u: "+".join(x.value for x in u))
def test_secret_templates_carry_only_asked_usages(
    spec: SecretKeySpec, usages: tuple[KeyUsage, ...]
) -> None:
    session = _RecordingSession()
    with pytest.raises(_Sent):
        p11manage.generate_secret_key(
            session,
            _EmptyStore(),
            "k",
            spec,
            b"\x01",
            usages,
            True,
            False,  # type: ignore[arg-type]
        )
    (template,) = session.sent
    assert _usage_flags(template) == {ATTR_OF[u]: True for u in usages}
