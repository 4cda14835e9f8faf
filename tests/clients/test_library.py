"""hwgate.connect / hwgate.aio.connect against a real daemon: typed calls and errors."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from clients_support import Gateway
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

import hwgate
import hwgate.aio
from hwgate.remote_key import RemoteEcKey, RemoteRsaKey
from hwgate_testbed.paths import PIV_PIN, vpcd_reader

pytestmark = pytest.mark.testbed
R0 = vpcd_reader(0)


def unimplemented_skip(exc: hwgate.HwgateError) -> None:
    if exc.code.name == "UNIMPLEMENTED":
        pytest.skip("the service answers UNIMPLEMENTED (not landed yet)")


def test_list_readers_and_unknown_reader_error(gateway: Gateway) -> None:
    with hwgate.connect(gateway.admin) as client:
        assert R0 in [r.name for r in client.list_readers()]
        with pytest.raises(hwgate.ReaderNotFound) as caught:
            client.open_session("no such reader")
    assert caught.value.reason == "READER_NOT_FOUND" and caught.value.code.name == "NOT_FOUND"


def test_card_session_always_closes(gateway: Gateway, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    client = hwgate.connect(gateway.admin)

    def held() -> bool:
        return next(r for r in client.list_readers() if r.name == R0).session_held

    with pytest.raises(RuntimeError), client.card_session(R0) as session:
        assert session.session_id and held()
        raise RuntimeError("boom")
    assert not held()
    with pytest.raises(hwgate.SessionNotFound):
        client.close_session(session.session_id)
    client.close()


def test_wrong_pin_raises_pin_incorrect_with_retries(gateway: Gateway, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    with hwgate.connect(gateway.admin) as client, client.card_session(R0) as session:
        try:
            session.verify_pin("000000")
        except hwgate.PinIncorrect as exc:
            assert exc.retries_left is not None and exc.retries_left >= 1
        except hwgate.HwgateError as exc:
            unimplemented_skip(exc)
            raise
        else:
            raise AssertionError("a wrong PIN was accepted")
        session.verify_pin(PIV_PIN)  # resets the counter
        assert session.get_card_info().pin_verified


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _remote(client: hwgate.Client, label: str) -> RemoteEcKey | RemoteRsaKey:
    try:
        return client.hsm_key(label)  # type: ignore[no-any-return]
    except hwgate.HwgateError as exc:
        unimplemented_skip(exc)
        raise


def test_remote_keys_sign_a_csr_and_a_certificate_that_verify(gateway: Gateway) -> None:
    with hwgate.connect(gateway.admin) as client:
        ca = _remote(client, "issuing-ca")
        subject_key = _remote(client, "signer-p256")
        rsa_key = _remote(client, "signer-rsa")
        assert isinstance(subject_key, ec.EllipticCurvePrivateKey)
        assert isinstance(rsa_key, rsa.RSAPrivateKey)

        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(_name("phone"))
            .sign(subject_key, hashes.SHA256())
        )
        assert csr.is_signature_valid
        rsa_csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(_name("rsa"))
            .sign(
                rsa_key, hashes.SHA256(), rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()), 32)
            )
        )
        assert rsa_csr.is_signature_valid

        now = datetime.datetime.now(datetime.UTC)
        issuer = _name("hwgate test issuing CA")
        cert = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(issuer)
            .public_key(csr.public_key())  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(ca, hashes.SHA256())
        )
    # Verify with the public key alone (no CA certificate needed for the check).
    public = ca.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        assert cert.signature_hash_algorithm is not None
        public.verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
        )
    else:
        assert cert.signature_hash_algorithm is not None
        public.verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            padding.PKCS1v15(),
            cert.signature_hash_algorithm,
        )
    assert cert.public_key() == subject_key.public_key()


def test_hsm_errors_are_typed(gateway: Gateway) -> None:
    with hwgate.connect(gateway.admin) as client:
        try:
            client.get_public_key("no-such-key")
        except hwgate.KeyNotFound as exc:
            assert exc.metadata.get("key") is not None or exc.reason == "KEY_NOT_FOUND"
        except hwgate.HwgateError as exc:
            unimplemented_skip(exc)
            raise
        else:
            raise AssertionError("no error for a missing key")
    with hwgate.connect(gateway.kiosk) as kiosk, pytest.raises(hwgate.PolicyDenied):
        kiosk.list_keys()


def test_aio_client_lists_watches_and_raises(gateway: Gateway) -> None:
    async def scenario() -> list[str]:
        async with hwgate.aio.connect(gateway.admin) as client:
            names = [r.name for r in await client.list_readers()]
            assert R0 in names
            stream = client.watch_events([R0])
            kinds = []
            async for event in stream:
                kinds.append(event.type)
                if event.type == 2:  # SNAPSHOT_COMPLETE
                    stream.cancel()
            with pytest.raises(hwgate.ReaderNotFound):
                await client.open_session("nope")
            return [str(k) for k in kinds]

    assert asyncio.run(scenario()) == ["1", "2"]  # READER_STATE, SNAPSHOT_COMPLETE
