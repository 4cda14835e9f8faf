"""S/MIME issuance and the phone's CMS decryption, without the test bed.

The certificate profile and the CSR rules against a local CA; the phone's
CMS EnvelopedData decryption against messages ``openssl cms -encrypt`` made
(an independent implementation), for the RSA and EC recipients a PIV card's
9D key can be.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from smime_support import assert_signing_profile, openssl_encrypt, openssl_verify_smimesign

from hwgate_apps.enrollment.issuer import CsrError
from hwgate_apps.enrollment.proof import ProofError
from hwgate_apps.enrollment.recovery import EscrowDirectory, KeyRecovery, RecoveryError
from hwgate_apps.enrollment.smime import (
    POLICY_COMMON_POLICY,
    SmimeProfile,
    build_signing_certificate,
    check_card_certificates,
    check_signing_csr,
)
from hwgate_apps.enrollment.smime import request_digest as server_digest
from hwgate_apps.phone.cms import CmsError, decrypt
from hwgate_apps.phone.smime import request_digest as phone_digest

NOW = dt.datetime.now(dt.UTC)
EMAIL = "erin.ecc@hwgate.example"
CARD_UUID = uuid.uuid4()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=9))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def piv_ca() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    return _ca("unit PIV CA")


@pytest.fixture(scope="module")
def issuing_ca() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    return _ca("unit issuing CA")


def _card_cert(
    ca: tuple[x509.Certificate, Any], key: Any, ku: dict[str, bool], names: list[x509.GeneralName]
) -> x509.Certificate:
    flags = dict.fromkeys(
        ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
         "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"], False,
    )  # fmt: skip
    flags.update(ku)
    return (
        x509.CertificateBuilder().subject_name(_name("Erin Ecc")).issuer_name(ca[0].subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=9))
        .add_extension(x509.KeyUsage(**flags), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca[1], hashes.SHA256())
    )  # fmt: skip


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def card(piv_ca: Any) -> dict[str, x509.Certificate]:
    uri = x509.UniformResourceIdentifier(CARD_UUID.urn)
    mail = x509.RFC822Name(EMAIL)
    return {
        "9a": _card_cert(piv_ca, _p256(), {"digital_signature": True}, [uri]),
        "9c": _card_cert(
            piv_ca, _p256(), {"digital_signature": True, "content_commitment": True}, [mail, uri]
        ),
        "9d": _card_cert(piv_ca, _p256(), {"key_agreement": True}, [mail, uri]),
    }


def test_card_certificates_of_the_proven_card_give_its_email(card: Any, piv_ca: Any) -> None:
    got = check_card_certificates(
        {"9c": _der(card["9c"]), "9d": _der(card["9d"])}, card["9a"], piv_ca[0], NOW
    )
    assert got.emails == (EMAIL,)
    assert got.km_certificate == card["9d"]


def test_card_certificates_of_another_card_or_issuer_are_refused(card: Any, piv_ca: Any) -> None:
    other_card = _card_cert(piv_ca, _p256(), {"key_agreement": True},
                            [x509.RFC822Name("mallory@hwgate.example"),
                             x509.UniformResourceIdentifier(uuid.uuid4().urn)])  # fmt: skip
    with pytest.raises(ProofError, match="not of the same card"):
        check_card_certificates({"9d": _der(other_card)}, card["9a"], piv_ca[0], NOW)
    forged = _card_cert(_ca("forger"), _p256(), {"key_agreement": True},
                        [x509.UniformResourceIdentifier(CARD_UUID.urn)])  # fmt: skip
    with pytest.raises(ProofError, match="does not chain"):
        check_card_certificates({"9d": _der(forged)}, card["9a"], piv_ca[0], NOW)
    # A signature certificate offered as the Key Management one does not fit the slot.
    with pytest.raises(ProofError, match="key usage"):
        check_card_certificates({"9d": _der(card["9c"])}, card["9a"], piv_ca[0], NOW)


def _csr(key: Any, *, san: list[str] = (), subject_email: str = "") -> str:  # type: ignore[assignment]
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, "phone")]
    if subject_email:
        attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, subject_email))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(e) for e in san]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def test_csr_may_not_ask_for_a_foreign_email(card: Any) -> None:
    key = _p256()
    assert check_signing_csr(_csr(key, san=[EMAIL.upper()]), (EMAIL,), [])  # its own: fine
    with pytest.raises(CsrError, match="e-mail"):
        check_signing_csr(_csr(key, san=[EMAIL, "boss@hwgate.example"]), (EMAIL,), [])
    with pytest.raises(CsrError, match="e-mail"):
        check_signing_csr(_csr(key, subject_email="boss@hwgate.example"), (EMAIL,), [])


def test_csr_needs_a_valid_self_signature_and_a_new_key(card: Any) -> None:
    pem = _csr(_p256())
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    bad = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(CsrError, match="self-signature"):
        check_signing_csr(bad, (EMAIL,), [])
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(CsrError, match="2048"):
        check_signing_csr(_csr(weak), (EMAIL,), [])
    derived_key = _p256()
    derived = _card_cert(_ca("x"), derived_key, {"digital_signature": True}, [])
    with pytest.raises(CsrError, match="new key"):
        check_signing_csr(_csr(derived_key), (EMAIL,), [derived])


def test_signing_certificate_profile(issuing_ca: Any, tmp_path: Path) -> None:
    key = _p256()
    csr = check_signing_csr(_csr(key, san=[EMAIL]), (EMAIL,), [])
    profile = SmimeProfile(
        subject=_name("Erin Ecc"), emails=(EMAIL,), piv_auth_not_after=NOW + dt.timedelta(days=5),
        policy_oid=POLICY_COMMON_POLICY, validity=dt.timedelta(days=365),
    )  # fmt: skip
    cert = build_signing_certificate(csr, profile, issuing_ca[0], issuing_ca[1], NOW)
    assert_signing_profile(cert, [EMAIL], POLICY_COMMON_POLICY)
    assert cert.not_valid_after_utc <= NOW + dt.timedelta(days=5)  # not past the PIV Auth cert
    (tmp_path / "ca.pem").write_bytes(issuing_ca[0].public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    openssl_verify_smimesign(tmp_path / "ca.pem", tmp_path / "leaf.pem")
    with pytest.raises(CsrError, match="no e-mail"):
        build_signing_certificate(csr, SmimeProfile(**{**profile.__dict__, "emails": ()}),
                                  issuing_ca[0], issuing_ca[1], NOW)  # fmt: skip


def test_phone_and_server_sign_the_same_request_digest() -> None:
    args = ("https://127.0.0.1:1", b"c" * 32, b"csr", b"peer")
    assert phone_digest(*args) == server_digest(*args)
    assert server_digest(*args) != server_digest("https://evil.example", *args[1:])
    assert server_digest(*args) != server_digest(*args[:3], b"other peer")


# --- the phone's CMS decryption against openssl cms -encrypt ---------------------------


def _self_signed(key: Any, tmp: Path, name: str) -> tuple[x509.Certificate, Path]:
    cert = (
        x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=9))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path = tmp / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, path


MAIL = b"Subject: derived key test\r\n\r\nOnly the Key Management key opens this.\r\n"


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("ec", ()),  # OpenSSL 3.0's defaults: 3DES content, CMS 3DES key wrap, SHA-1 KDF
        ("ec", ("-aes256", "-keyopt", "ecdh_kdf_md:sha256", "-outform", "DER")),
        ("rsa", ("-aes128", "-outform", "PEM")),
        ("rsa", ("-keyopt", "rsa_padding_mode:oaep")),
    ],
)
def test_phone_decrypts_what_openssl_encrypted(kind: str, options: tuple[str, ...],
                                               tmp_path: Path) -> None:  # fmt: skip
    key: Any = _p256() if kind == "ec" else rsa.generate_private_key(public_exponent=65537,
                                                                     key_size=2048)  # fmt: skip
    cert, path = _self_signed(key, tmp_path, "km")
    message = openssl_encrypt(path, MAIL, tmp_path, *options)
    assert decrypt(message, key, cert) == MAIL
    # Another key of the same kind with the right certificate: refused, not garbage.
    other: Any = _p256() if kind == "ec" else rsa.generate_private_key(public_exponent=65537,
                                                                       key_size=2048)  # fmt: skip
    with pytest.raises(CmsError):
        decrypt(message, other, cert)


def test_phone_refuses_mail_for_another_recipient(tmp_path: Path) -> None:
    mine, other = _p256(), _p256()
    my_cert, _ = _self_signed(mine, tmp_path, "mine")
    _, other_path = _self_signed(other, tmp_path, "other")
    message = openssl_encrypt(other_path, MAIL, tmp_path, "-aes256")
    with pytest.raises(CmsError, match="no recipient"):
        decrypt(message, mine, my_cert)
    with pytest.raises(CmsError):
        decrypt(b"not a message at all", mine, my_cert)


# --- the escrow records the server hands to RewrapForPeer -------------------------------


def _record(cert: x509.Certificate, **over: Any) -> str:
    record = {
        "slot": "9d",
        "key_algorithm": "KEY_ALGORITHM_EC_P256",
        "wrapping_key": "escrow-kek",
        "wrapped_key": base64.b64encode(b"\x01" * 40).decode(),
        "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
    }
    return json.dumps({**record, **over})


def test_escrow_record_counts_only_for_the_certificate_it_names(
    card: Any, piv_ca: Any, tmp_path: Path
) -> None:
    escrow = EscrowDirectory(tmp_path)
    assert escrow.find(card["9d"]) is None  # no record
    (tmp_path / f"{CARD_UUID}.json").write_text(_record(card["9d"]))
    found = escrow.find(card["9d"])
    assert found is not None and found.wrapped_key == b"\x01" * 40
    assert (found.key_algorithm, found.wrapping_key) == ("KEY_ALGORITHM_EC_P256", "escrow-kek")
    # The same card re-keyed: a new 9D certificate does not get the old key, nor does a
    # certificate of the same card for another slot.
    rekeyed = _card_cert(piv_ca, _p256(), {"key_agreement": True},
                         [x509.UniformResourceIdentifier(CARD_UUID.urn)])  # fmt: skip
    assert escrow.find(rekeyed) is None
    (tmp_path / f"{CARD_UUID}.json").write_text(_record(card["9d"], slot="9c"))
    assert escrow.find(card["9d"]) is None
    (tmp_path / f"{CARD_UUID}.json").write_text(_record(card["9d"], wrapped_key="not base64!"))
    with pytest.raises(RecoveryError, match="damaged"):
        escrow.find(card["9d"])


def test_key_recovery_refuses_a_record_under_another_wrapping_key(
    card: Any, tmp_path: Path
) -> None:
    (tmp_path / f"{CARD_UUID}.json").write_text(_record(card["9d"], wrapping_key="old-kek"))
    recovery = KeyRecovery(hsm=None, escrow=EscrowDirectory(tmp_path), wrapping_key="escrow-kek")
    with pytest.raises(RecoveryError, match="another wrapping key"):
        recovery.rewrap_for_peer(card["9d"], b"")
