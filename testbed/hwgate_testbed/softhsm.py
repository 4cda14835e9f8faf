"""The test bed's SoftHSM2 token: a private token directory and the keys the
derived-credential flow needs (issuing CA, signers, ECDH, activation master, HMAC,
the escrow key that wraps the cards' key-management keys).

Provisioning is idempotent: an existing token with the label is reused and only
missing objects are created, so `up` can run again without changing any key.
PINs are random, written to 0600 files and never printed.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11._pkcs11 import lib as Pkcs11Lib
from pkcs11.types import SignMixin
from pkcs11.util.ec import encode_named_curve_parameters
from pkcs11.util.x509 import decode_x509_certificate

from hwgate_testbed.fsutil import write_private
from hwgate_testbed.paths import SOFTHSM_MODULE, TOKEN_LABEL, TestbedPaths

_SIGN = MechanismFlag.SIGN | MechanismFlag.VERIFY


@dataclass(frozen=True)
class KeySpec:
    """One key (or key pair) the token must hold."""

    label: str
    id: bytes
    kind: str  # human summary, shown by `status`


KEYS: tuple[KeySpec, ...] = (
    KeySpec("issuing-ca", b"\x01", "RSA-3072 sign, self-signed CA certificate"),
    KeySpec("signer-p256", b"\x02", "EC P-256 sign"),
    KeySpec("signer-rsa", b"\x03", "RSA-2048 sign"),
    KeySpec("ecdh-p256", b"\x04", "EC P-256 derive"),
    KeySpec("activation-master", b"\x05", "AES-256 derive, sensitive, not extractable"),
    KeySpec("hmac-key", b"\x06", "generic secret 32 bytes, SHA256-HMAC sign/verify"),
    KeySpec("escrow-kek", b"\x07", "AES-256 wrap/unwrap only, sensitive: the escrow key"),
)


@dataclass(frozen=True)
class TokenInfo:
    """Where the token lives and how to reach it (no PIN values, only their files)."""

    label: str
    module: Path
    conf: Path
    user_pin_file: Path
    so_pin_file: Path
    keys: tuple[KeySpec, ...] = field(default=KEYS)


class TokenError(RuntimeError):
    """The token cannot be created or opened."""


def token_info(paths: TestbedPaths) -> TokenInfo:
    return TokenInfo(TOKEN_LABEL, SOFTHSM_MODULE, paths.softhsm_conf, paths.user_pin, paths.so_pin)


def write_conf(paths: TestbedPaths) -> None:
    """A softhsm2.conf that keeps the token inside the test bed directory."""
    paths.tokens.mkdir(parents=True, exist_ok=True)
    paths.softhsm_conf.write_text(
        f"directories.tokendir = {paths.tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )


_loaded_conf: Path | None = None


def load_module(paths: TestbedPaths) -> Pkcs11Lib:
    """The SoftHSM2 module initialised on this test bed's token directory.

    SoftHSM reads SOFTHSM2_CONF in C_Initialize, and python-pkcs11 keeps one
    loaded instance per module path, so switching directories re-initialises.
    """
    global _loaded_conf
    os.environ["SOFTHSM2_CONF"] = str(paths.softhsm_conf)
    lib = pkcs11.lib(str(SOFTHSM_MODULE))
    if _loaded_conf not in (None, paths.softhsm_conf):
        lib.reinitialize()
    _loaded_conf = paths.softhsm_conf
    return lib


def _find_token(lib: Pkcs11Lib) -> pkcs11.Token | None:
    return next(iter(lib.get_tokens(token_label=TOKEN_LABEL)), None)


def _init_token(paths: TestbedPaths) -> None:
    """Create the token with fresh random PINs (softhsm2-util: python-pkcs11 has no
    C_InitToken). The PINs go on its command line, never to our output."""
    user_pin, so_pin = secrets.token_hex(8), secrets.token_hex(8)
    write_private(paths.user_pin, user_pin + "\n")
    write_private(paths.so_pin, so_pin + "\n")
    cmd = ["softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL,
           "--so-pin", so_pin, "--pin", user_pin]  # fmt: skip
    env = {**os.environ, "SOFTHSM2_CONF": str(paths.softhsm_conf)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TokenError(f"softhsm2-util --init-token failed: {done.stderr.strip()}")


def read_pin(pin_file: Path) -> str:
    try:
        return pin_file.read_text().strip()
    except FileNotFoundError:
        raise TokenError(f"token exists but its PIN file {pin_file} is missing") from None


@contextlib.contextmanager
def user_session(paths: TestbedPaths, rw: bool = False) -> Iterator[pkcs11.Session]:
    """A logged-in session on the test bed token (closing it logs the process out)."""
    token = _find_token(load_module(paths))
    if token is None:
        raise TokenError(f"no token labelled {TOKEN_LABEL!r} under {paths.tokens}")
    with token.open(rw=rw, user_pin=read_pin(paths.user_pin)) as session:
        yield session


def provision_token(directory: TestbedPaths | Path) -> TokenInfo:
    """Create (or reuse) the token and every key in KEYS; return where it is."""
    paths = directory if isinstance(directory, TestbedPaths) else TestbedPaths.at(directory)
    write_conf(paths)
    lib = load_module(paths)
    if _find_token(lib) is None:
        _init_token(paths)
        lib.reinitialize()  # SoftHSM scans the token directory in C_Initialize
    with user_session(paths, rw=True) as session:
        for spec in KEYS:
            if not _has_key(session, spec):
                _GENERATORS[spec.label](session, spec)
        _ensure_ca_certificate(session, paths)
    return token_info(paths)


def list_keys(paths: TestbedPaths) -> list[dict[str, Any]]:
    """Every key object on the token: label, id (hex), class, key type."""
    out = []
    with user_session(paths) as session:
        for obj in session.get_objects():
            cls = ObjectClass(obj[Attribute.CLASS])
            if cls not in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.SECRET_KEY):
                continue
            out.append({
                "label": obj[Attribute.LABEL],
                "id": bytes(obj[Attribute.ID]).hex(),
                "class": cls.name,
                "key_type": obj[Attribute.KEY_TYPE].name,
            })  # fmt: skip
    return sorted(out, key=lambda k: (k["label"], k["class"]))


def _has_key(session: pkcs11.Session, spec: KeySpec) -> bool:
    """A key pair counts by its private half, a secret key by itself."""
    for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY):
        if next(iter(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: spec.label})),
                None) is not None:  # fmt: skip
            return True
    return False


_PRIVATE = {Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True}


def _rsa(bits: int) -> Any:
    def generate(session: pkcs11.Session, spec: KeySpec) -> None:
        session.generate_keypair(
            KeyType.RSA, bits, id=spec.id, label=spec.label, store=True,
            capabilities=_SIGN, private_template=_PRIVATE,
        )  # fmt: skip

    return generate


def _p256(capabilities: MechanismFlag) -> Any:
    def generate(session: pkcs11.Session, spec: KeySpec) -> None:
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )  # fmt: skip
        params.generate_keypair(
            id=spec.id, label=spec.label, store=True, capabilities=capabilities,
            private_template=_PRIVATE,
        )  # fmt: skip

    return generate


def _secret(key_type: KeyType, bits: int, capabilities: MechanismFlag) -> Any:
    def generate(session: pkcs11.Session, spec: KeySpec) -> None:
        session.generate_key(
            key_type, bits, id=spec.id, label=spec.label, store=True,
            capabilities=capabilities, template=_PRIVATE,
        )  # fmt: skip

    return generate


_GENERATORS = {
    "issuing-ca": _rsa(3072),
    "signer-p256": _p256(_SIGN),
    "signer-rsa": _rsa(2048),
    "ecdh-p256": _p256(MechanismFlag.DERIVE),
    "activation-master": _secret(KeyType.AES, 256, MechanismFlag.DERIVE),
    "hmac-key": _secret(KeyType.GENERIC_SECRET, 256, _SIGN),
    # The escrow key-encryption key: it only wraps and unwraps (the cards' key-management
    # keys, hwgate_testbed.escrow), never encrypts data, never leaves the token.
    "escrow-kek": _secret(KeyType.AES, 256, MechanismFlag.WRAP | MechanismFlag.UNWRAP),
}


def _ensure_ca_certificate(session: pkcs11.Session, paths: TestbedPaths) -> None:
    """Self-signed issuing-CA certificate object (signed inside the token), also
    exported to pki/issuing-ca.pem for clients that verify derived credentials."""
    spec = KEYS[0]
    query = {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: spec.label}
    existing = next(iter(session.get_objects(query)), None)
    if existing is None:
        der = _self_signed_ca(session, spec)
        template = decode_x509_certificate(der)
        template.update({Attribute.TOKEN: True, Attribute.LABEL: spec.label,
                         Attribute.ID: spec.id})  # fmt: skip
        session.create_object(template)
    else:
        der = bytes(existing[Attribute.VALUE])
    paths.pki.mkdir(parents=True, exist_ok=True)
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    paths.pki_cert("issuing-ca").write_bytes(pem)


def _self_signed_ca(session: pkcs11.Session, spec: KeySpec) -> bytes:
    """Build the TBS with cryptography (which needs a key object to produce it),
    then replace the placeholder signature with one made by the token's key."""
    priv = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, label=spec.label)
    assert isinstance(priv, SignMixin)
    pub = session.get_key(ObjectClass.PUBLIC_KEY, KeyType.RSA, label=spec.label)
    numbers = rsa.RSAPublicNumbers(
        int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big"),
        int.from_bytes(pub[Attribute.MODULUS], "big"),
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hwgate test issuing CA")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(numbers.public_key())
    placeholder = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    draft = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(numbers.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(placeholder, hashes.SHA256())
    )
    tbs = draft.tbs_certificate_bytes
    signature = priv.sign(tbs, mechanism=Mechanism.SHA256_RSA_PKCS)
    der = _der_certificate(tbs, signature)
    cert = x509.load_der_x509_certificate(der)
    cert.verify_directly_issued_by(cert)  # fails loudly if the assembly is wrong
    return der


_SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_certificate(tbs: bytes, signature: bytes) -> bytes:
    """Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }."""
    bit_string = b"\x03" + _der_len(len(signature) + 1) + b"\x00" + signature
    body = tbs + _SHA256_WITH_RSA + bit_string
    return b"\x30" + _der_len(len(body)) + body
