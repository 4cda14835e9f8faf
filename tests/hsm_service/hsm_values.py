"""Read an extractable secret key's value straight from the token, to check the daemon.

Runs python-pkcs11 in a spawned child (its own PKCS#11 application and login),
so this pytest process never loads SoftHSM itself.
"""

from __future__ import annotations

import multiprocessing
import os

from hwgate_testbed.paths import SOFTHSM_MODULE, TOKEN_LABEL


def secret_value(testbed: object, label: str) -> bytes:
    """CKA_VALUE of the extractable secret key labelled *label* on the test bed token."""
    paths = testbed.paths  # type: ignore[attr-defined]
    pin = paths.user_pin.read_text().strip()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        value: bytes = pool.apply(_read, (str(paths.softhsm_conf), pin, label))
    return value


def _read(conf: str, pin: str, label: str) -> bytes:
    os.environ["SOFTHSM2_CONF"] = conf
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    token = pkcs11.lib(str(SOFTHSM_MODULE)).get_token(token_label=TOKEN_LABEL)
    with token.open(user_pin=pin) as session:
        key = next(
            session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})
        )
        return bytes(key[Attribute.VALUE])
