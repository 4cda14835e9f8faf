"""Signing with a card key (Sign, Authenticate), as a job on the reader's worker thread.

Every check that does not need the card runs first: the digest length, the
slot's certificate (cached per insertion; VerifyPin has read it) for the key
type, the scheme against that key, the PIN precondition from the session's own
record. Only then does one
GENERAL AUTHENTICATE go out. The signature is verified with the certificate
before it is returned: a card whose key and certificate disagree is reported,
and a faulty RSA result (which could leak the key) never leaves the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from hwgated import errors
from hwgated.pcsc.connection import Connection
from hwgated.piv import errors as piv_errors
from hwgated.piv.schemes import Family, Scheme
from hwgated.piv.slots import Algorithm, PinPolicy, Slot
from hwgated.pivapp.app import PivApp
from hwgated.pivapp.cache import cached_certificate
from hwgated.pivapp.pin import pin_always_armed, pin_required, session_pin_verified
from hwgated.pivapp.schemes import card_block, check_digest, key_algorithm


@dataclass(frozen=True)
class CardSignature:
    signature: bytes  # DER Ecdsa-Sig-Value, or the RSA signature octets
    certificate: bytes  # DER, of the slot that signed
    algorithm: Algorithm


def slot_key(connection: Connection, slot: Slot) -> tuple[bytes, Algorithm]:
    """The slot's certificate and key type; SLOT_EMPTY when it has no certificate,
    NOT_A_PIV_CARD on a card without a PIV application (not the SELECT's 6A82)."""
    app = PivApp(connection)
    app.require_piv()
    return _slot_key(app, slot)


def _slot_key(app: PivApp, slot: Slot) -> tuple[bytes, Algorithm]:
    cert = cached_certificate(app, slot)
    if cert is None:
        raise errors.SlotEmpty(f"slot {slot:02X} holds no certificate", slot=f"{slot:02X}")
    return cert, key_algorithm(cert)


def check_pin_precondition(app: PivApp, slot: Slot, session_id: str, *, require: bool) -> None:
    """PIN_REQUIRED without touching the card when the session cannot have the PIN status.

    "PIN always" (9C): VerifyPin must be the session's previous card command.
    With *require* (Authenticate on 9A): VerifyPin must have succeeded in the session.
    Otherwise (9D "PIN once", 9E "never") the card decides.
    """
    if slot.pin_policy is PinPolicy.ALWAYS and not pin_always_armed(app, session_id):
        why = f"slot {slot:02X} is 'PIN always': call VerifyPin right before each Sign"
        raise pin_required(app, session_id, why)
    if require and not session_pin_verified(app, session_id):
        raise pin_required(
            app, session_id, f"slot {slot:02X} needs VerifyPin in this session first"
        )


def sign_digest(
    connection: Connection,
    slot: Slot,
    scheme: Scheme,
    digest: bytes,
    session_id: str,
    *,
    require_pin: bool = False,
) -> CardSignature:
    """Sign *digest* with the key in *slot* under *scheme* (see the module doc)."""
    check_digest(scheme, digest)
    app = PivApp(connection)
    app.require_piv()
    certificate, algorithm = _slot_key(app, slot)  # cached: no APDU after VerifyPin
    block = card_block(scheme, algorithm, digest)
    check_pin_precondition(app, slot, session_id, require=require_pin)
    try:
        signature = app.card().sign_raw(slot, algorithm, block)
    except piv_errors.SecurityStatusNotSatisfied:
        raise errors.PinRequired(f"the card wants the PIN for slot {slot:02X}") from None
    check_signature(certificate, scheme, digest, signature)
    return CardSignature(signature, certificate, algorithm)


def check_signature(certificate: bytes, scheme: Scheme, digest: bytes, signature: bytes) -> None:
    """CARD_ERROR unless *signature* verifies with the certificate's public key."""
    key = x509.load_der_x509_certificate(certificate).public_key()
    chosen = Prehashed(_HASHES[scheme.hash_name]())
    try:
        if scheme.family is Family.ECDSA:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(signature, digest, ec.ECDSA(chosen))
        else:
            assert isinstance(key, rsa.RSAPublicKey)
            key.verify(signature, digest, _rsa_padding(scheme), chosen)
    except (InvalidSignature, ValueError):
        raise errors.CardError(
            "the card's signature does not verify with the slot's certificate"
        ) from None


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _rsa_padding(scheme: Scheme) -> padding.AsymmetricPadding:
    if scheme.family is Family.PKCS1:
        return padding.PKCS1v15()
    return padding.PSS(
        mgf=padding.MGF1(_HASHES[scheme.hash_name]()), salt_length=scheme.digest_size
    )
