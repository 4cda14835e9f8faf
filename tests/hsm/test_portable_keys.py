"""Portable key templates and usage checks, on SoftHSM (issue #19 items 2 and 3).

Key generation asks only for the usages the request names (no explicit FALSE
flags: tpm2-pkcs11 refuses those), and the KeyInfo it returns is what the token
reports, read back. The token's view is read here independently, by a separate
PKCS#11 application in a child process. A key without the usage an operation
needs is refused before the module is called (KEY_USAGE_NOT_ALLOWED).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Iterator

import pytest
from hsm_support import MODULE, TOKEN_LABEL, USER_PIN, HsmTestToken, LoopThread

from hwgated.hsm import HsmPool, KeyUsage, KeyUsageNotAllowed, SignAlgorithm

U = KeyUsage
PEER = bytes.fromhex(  # a P-256 point (the generator)
    "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
)


def token_flags(token: HsmTestToken, label: str) -> frozenset[KeyUsage]:
    """The usage flags set on every object labelled ``label``, as the token reports them
    to another application."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as child:
        names: list[str] = child.apply(_read_flags, (str(token.conf_path), label))
    return frozenset(KeyUsage(n) for n in names)


def _read_flags(conf_path: str, label: str) -> list[str]:
    os.environ["SOFTHSM2_CONF"] = conf_path
    import pkcs11
    from pkcs11 import Attribute

    attrs = {
        Attribute.SIGN: "sign",
        Attribute.VERIFY: "verify",
        Attribute.DERIVE: "derive",
        Attribute.ENCRYPT: "encrypt",
        Attribute.DECRYPT: "decrypt",
        Attribute.WRAP: "wrap",
        Attribute.UNWRAP: "unwrap",
    }
    found: set[str] = set()
    tok = pkcs11.lib(MODULE).get_token(token_label=TOKEN_LABEL)
    with tok.open(user_pin=USER_PIN) as session:
        objects = list(session.get_objects({Attribute.LABEL: label}))
        assert objects, label
        for obj in objects:
            values = obj.get_attributes(list(attrs))
            found |= {name for attr, name in attrs.items() if values.get(attr)}
    return sorted(found)


@pytest.fixture
def cleanup(pool: HsmPool, loop_thread: LoopThread) -> Iterator[list[str]]:
    labels: list[str] = []
    yield labels
    for label in labels:
        loop_thread.run(pool.delete_key(label))


PAIRS = [
    ("EC_P256", (U.SIGN,)),
    ("EC_P256", (U.DERIVE,)),
    ("EC_P256", (U.SIGN, U.VERIFY, U.DERIVE)),
    ("RSA2048", (U.SIGN, U.VERIFY)),
    ("RSA2048", (U.DECRYPT, U.ENCRYPT)),
    ("RSA2048", (U.VERIFY,)),
]
SECRETS = [
    ("AES128", (U.ENCRYPT, U.DECRYPT)),
    ("AES256", (U.DERIVE,)),
    ("GENERIC_SECRET", (U.SIGN, U.VERIFY)),
]


@pytest.mark.parametrize(("spec", "usages"), PAIRS + SECRETS)
def test_keygen_reports_the_usages_the_token_set(
    pool: HsmPool,
    loop_thread: LoopThread,
    token: HsmTestToken,
    cleanup: list[str],
    spec: str,
    usages: tuple[KeyUsage, ...],
) -> None:
    label = f"portable-{spec}-{'-'.join(u.value for u in usages)}"
    cleanup.append(label)
    if (spec, usages) in SECRETS:
        info = loop_thread.run(pool.generate_secret_key(label, spec, usage=usages))
    else:
        info = loop_thread.run(pool.generate_key_pair(label, spec, usage=usages))
    reported = token_flags(token, label)
    assert info.usages == reported  # KeyInfo says what the token set, not what was asked
    assert set(usages) <= reported  # and the token set everything that was asked
    listed = {k.label: k for k in loop_thread.run(pool.list_keys())}[label]
    assert listed.usages == reported  # the listing folds the public half's usages in too


def test_sign_only_key_signs_and_refuses_to_derive(
    pool: HsmPool, loop_thread: LoopThread, cleanup: list[str]
) -> None:
    cleanup.append("usage-sign-only")
    info = loop_thread.run(pool.generate_key_pair("usage-sign-only", "EC_P256", usage=[U.SIGN]))
    # SoftHSM's default for an unset CKA_DERIVE is false.
    assert U.DERIVE not in info.usages
    digest = hashlib.sha256(b"usage").digest()
    assert loop_thread.run(pool.sign("usage-sign-only", SignAlgorithm.ECDSA_SHA256, digest))
    with pytest.raises(KeyUsageNotAllowed) as refused:
        loop_thread.run(
            pool.derive_ecdh("usage-sign-only", PEER, token_object=False, extractable=True)
        )
    assert refused.value.reason == "KEY_USAGE_NOT_ALLOWED"
    assert refused.value.fields == {"key": "usage-sign-only", "usage": "derive"}
    # The refusal cost no worker.
    before = set(pool.worker_pids())
    assert loop_thread.run(pool.sign("usage-sign-only", SignAlgorithm.ECDSA_SHA256, digest))
    assert set(pool.worker_pids()) == before


def test_key_without_sign_is_refused_before_the_module(
    pool: HsmPool, loop_thread: LoopThread, token: HsmTestToken, cleanup: list[str]
) -> None:
    cleanup.append("usage-no-sign")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as child:
        child.apply(_make_non_signing_pair, (str(token.conf_path), "usage-no-sign"))
    assert U.SIGN not in token_flags(token, "usage-no-sign")
    digest = hashlib.sha256(b"no sign").digest()
    with pytest.raises(KeyUsageNotAllowed) as refused:
        loop_thread.run(pool.sign("usage-no-sign", SignAlgorithm.ECDSA_SHA256, digest))
    assert refused.value.fields == {"key": "usage-no-sign", "usage": "sign"}
    with pytest.raises(KeyUsageNotAllowed):
        loop_thread.run(pool.sign_many("usage-no-sign", SignAlgorithm.ECDSA_SHA256, [digest] * 8))


def _make_non_signing_pair(conf_path: str, label: str) -> None:
    os.environ["SOFTHSM2_CONF"] = conf_path
    import pkcs11
    from pkcs11 import Attribute, KeyType, MechanismFlag
    from pkcs11.util.ec import encode_named_curve_parameters

    tok = pkcs11.lib(MODULE).get_token(token_label=TOKEN_LABEL)
    with tok.open(rw=True, user_pin=USER_PIN) as session:
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        params.generate_keypair(
            store=True, label=label, id=b"\x77", capabilities=MechanismFlag.DERIVE
        )
