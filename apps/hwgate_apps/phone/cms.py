"""Open a CMS EnvelopedData (S/MIME encrypted mail) with the recovered Key Management key.

Why our own code: the phone proves the recovered key works on mail that an
independent tool (``openssl cms -encrypt``) encrypted to the card's 9D
certificate, and ``cryptography`` only opens RSA key-transport messages. A PIV
card's 9D key is RSA or EC, so both recipient kinds are handled here with
``cryptography`` primitives and ``asn1crypto`` for the ASN.1:

- ``ktri`` (RFC 5652 §6.2.1, RSA): the content-encryption key (CEK) is RSA
  PKCS#1 v1.5 (rsaEncryption, what OpenSSL sends) or RSAES-OAEP encrypted.
- ``kari`` (RFC 5753 §3.1, EC): ephemeral-static ECDH between the
  originator's key in the message and the 9D key, the ANSI X9.63 KDF with the
  scheme's hash (``dhSinglePass-stdDH-sha*kdf-scheme``; OpenSSL's default is
  SHA-1) over ECC-CMS-SharedInfo, then AES key unwrap (RFC 3394) of the CEK,
  or the CMS 3DES key unwrap (RFC 3217) when the content is 3DES (OpenSSL
  matches the key wrap to the content cipher).

The content is AES-CBC (128/192/256) or, read only because it is still
``openssl cms -encrypt``'s default cipher (OpenSSL 3.0), 3-key 3DES-CBC.
Recipients are matched by issuer and serial or by subject key identifier of
the 9D certificate, so a message for someone else is refused, not guessed at.
"""

from __future__ import annotations

import base64
import binascii
import email
import hashlib
import hmac
from typing import Any

from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

# RFC 5753 §7.1.4 / SEC 1: the standard (not cofactor) ECDH schemes, by KDF hash.
_STD_DH_SCHEMES: dict[str, hashes.HashAlgorithm] = {
    "1.3.133.16.840.63.0.2": hashes.SHA1(),  # dhSinglePass-stdDH-sha1kdf-scheme
    "1.3.132.1.11.0": hashes.SHA224(),  # dhSinglePass-stdDH-sha224kdf-scheme
    "1.3.132.1.11.1": hashes.SHA256(),
    "1.3.132.1.11.2": hashes.SHA384(),
    "1.3.132.1.11.3": hashes.SHA512(),
}
# id-aes{128,192,256}-wrap (RFC 3394 / RFC 3565): KEK length in bytes.
_AES_WRAP = {
    "2.16.840.1.101.3.4.1.5": 16,
    "2.16.840.1.101.3.4.1.25": 24,
    "2.16.840.1.101.3.4.1.45": 32,
}
_CMS_3DES_WRAP = "1.2.840.113549.1.9.16.3.6"  # id-alg-CMS3DESwrap (RFC 3217)
_3DES_WRAP_IV = bytes.fromhex("4adda22c79e82105")
_RSA_PKCS1 = "1.2.840.113549.1.1.1"
_RSA_OAEP = "1.2.840.113549.1.1.7"


class CmsError(Exception):
    """The message cannot be opened with this key (why, never key material)."""


def der_of(message: bytes) -> bytes:
    """The DER of an S/MIME message (MIME, base64 body), a PEM ``CMS`` block, or DER."""
    stripped = message.lstrip()
    if stripped.startswith(b"-----BEGIN"):
        body = b"".join(
            line for line in stripped.splitlines() if line and not line.startswith(b"-----")
        )
        return _b64(body)
    if stripped[:1] == b"\x30":
        return message
    parsed = email.message_from_bytes(message)
    payload = parsed.get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload:
        raise CmsError("not an S/MIME message, PEM or DER CMS")
    return payload


def _b64(data: bytes) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (ValueError, binascii.Error):
        raise CmsError("bad base64 in the PEM block") from None


def _matches(rid: Any, cert: x509.Certificate) -> bool:
    """Whether a RecipientIdentifier / KeyAgreeRecipientIdentifier names *cert*."""
    if rid.name == "issuer_and_serial_number":
        issuer = rid.chosen["issuer"].dump()
        return bool(
            issuer == cert.issuer.public_bytes()
            and rid.chosen["serial_number"].native == cert.serial_number
        )
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return False
    value = rid.chosen["subject_key_identifier"] if rid.name == "r_key_id" else rid.chosen
    return bytes(value.native) == ski


def _ktri_cek(ri: Any, key: rsa.RSAPrivateKey) -> bytes:
    algorithm = ri["key_encryption_algorithm"]["algorithm"].dotted
    encrypted = ri["encrypted_key"].native
    if algorithm == _RSA_PKCS1:
        return key.decrypt(encrypted, asym_padding.PKCS1v15())
    if algorithm == _RSA_OAEP:
        params = ri["key_encryption_algorithm"]["parameters"]
        name = params["hash_algorithm"]["algorithm"].native if params.native else "sha1"
        digest = _hash_named(name)
        oaep = asym_padding.OAEP(asym_padding.MGF1(digest), digest, None)
        return key.decrypt(encrypted, oaep)
    raise CmsError(f"unsupported key transport {algorithm}")


def _hash_named(name: str) -> hashes.HashAlgorithm:
    table = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
             "sha512": hashes.SHA512()}  # fmt: skip
    if name not in table:
        raise CmsError(f"unsupported hash {name}")
    return table[name]


def _shared_info(wrap_der: bytes, ukm: bytes | None, kek_len: int) -> bytes:
    """ECC-CMS-SharedInfo (RFC 5753 §7.2): keyInfo, [0] ukm, [2] KEK length in bits."""

    class SharedInfo(core.Sequence):
        _fields = [
            ("key_info", core.Any),
            ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
            ("supp_pub_info", core.OctetString, {"explicit": 2}),
        ]

    value: dict[str, Any] = {
        "key_info": core.Any.load(wrap_der),
        "supp_pub_info": (8 * kek_len).to_bytes(4, "big"),
    }
    if ukm is not None:
        value["entity_u_info"] = ukm
    return SharedInfo(value).dump()


def _kari_cek(kari: Any, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bytes | None:
    rek = next((r for r in kari["recipient_encrypted_keys"] if _matches(r["rid"], cert)), None)
    if rek is None:
        return None
    scheme = kari["key_encryption_algorithm"]["algorithm"].dotted
    if scheme not in _STD_DH_SCHEMES:
        raise CmsError(f"unsupported key agreement {scheme}")
    wrap_der = kari["key_encryption_algorithm"]["parameters"].dump()
    wrap_oid = core.Sequence.load(wrap_der)[0]
    wrap = wrap_oid.dotted if isinstance(wrap_oid, core.ObjectIdentifier) else ""
    if wrap not in _AES_WRAP and wrap != _CMS_3DES_WRAP:
        raise CmsError("unsupported key wrap algorithm")
    kek_len = _AES_WRAP.get(wrap, 24)
    originator = kari["originator"]
    if originator.name != "originator_key":
        raise CmsError("the originator's key is not in the message")
    point = bytes(originator.chosen["public_key"].native)
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, point)
    except ValueError:
        raise CmsError("the originator's key is not on the 9D key's curve") from None
    z = key.exchange(ec.ECDH(), peer)
    ukm = kari["ukm"].native if kari["ukm"].native is not None else None
    info = _shared_info(wrap_der, ukm, kek_len)
    kek = X963KDF(_STD_DH_SCHEMES[scheme], kek_len, info).derive(z)
    try:
        if wrap == _CMS_3DES_WRAP:
            return _3des_key_unwrap(kek, rek["encrypted_key"].native)
        return aes_key_unwrap(kek, rek["encrypted_key"].native)
    except (InvalidUnwrap, ValueError):
        raise CmsError("the content key does not unwrap: not encrypted to this key") from None


def _3des_key_unwrap(kek: bytes, wrapped: bytes) -> bytes:
    """RFC 3217 §3.2: CBC with the fixed IV, reverse, CBC with the inner IV, check the
    SHA-1 checksum."""

    def cbc_decrypt(iv: bytes, data: bytes) -> bytes:
        decryptor = Cipher(TripleDES(kek), modes.CBC(iv)).decryptor()
        return decryptor.update(data) + decryptor.finalize()

    if len(wrapped) % 8 or len(wrapped) < 24:
        raise ValueError("bad wrapped key length")
    temp2 = cbc_decrypt(_3DES_WRAP_IV, wrapped)[::-1]
    wkcks = cbc_decrypt(temp2[:8], temp2[8:])
    wk, cks = wkcks[:-8], wkcks[-8:]
    if not hmac.compare_digest(hashlib.sha1(wk).digest()[:8], cks):
        raise ValueError("key checksum mismatch")
    return wk


def _content_key(env: Any, key: Any, cert: x509.Certificate) -> bytes:
    for ri in env["recipient_infos"]:
        if ri.name == "ktri" and isinstance(key, rsa.RSAPrivateKey):
            if _matches(ri.chosen["rid"], cert):
                try:
                    return _ktri_cek(ri.chosen, key)
                except ValueError:
                    raise CmsError("the content key does not decrypt with this key") from None
        elif ri.name == "kari" and isinstance(key, ec.EllipticCurvePrivateKey):
            cek = _kari_cek(ri.chosen, key, cert)
            if cek is not None:
                return cek
    raise CmsError("the message has no recipient for this certificate")


def _content_cipher(algorithm: Any, cek: bytes) -> Any:
    """AES or 3DES for the content-encryption key, CBC only."""
    name, mode = algorithm.encryption_cipher, algorithm.encryption_mode
    if mode != "cbc" or name not in ("aes", "tripledes"):
        raise CmsError(f"unsupported content encryption {algorithm['algorithm'].native}")
    if len(cek) != algorithm.key_length:
        raise CmsError("the content key has the wrong length")
    return algorithms.AES(cek) if name == "aes" else TripleDES(cek)


def decrypt(message: bytes, key: Any, cert: x509.Certificate) -> bytes:
    """The content of an EnvelopedData for *cert* (S/MIME, PEM or DER), opened with *key*."""
    try:
        info = cms.ContentInfo.load(der_of(message))
        if info["content_type"].native != "enveloped_data":
            raise CmsError(f"not EnvelopedData but {info['content_type'].native}")
        env = info["content"]
        cek = _content_key(env, key, cert)
        eci = env["encrypted_content_info"]
        algorithm = eci["content_encryption_algorithm"]
        cipher = _content_cipher(algorithm, cek)
        ciphertext = eci["encrypted_content"].native or b""
    except (ValueError, TypeError, KeyError) as err:
        raise CmsError(f"malformed CMS: {type(err).__name__}") from None
    decryptor = Cipher(cipher, modes.CBC(algorithm.encryption_iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(cipher.block_size).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise CmsError("bad padding: wrong key or damaged message") from None
