"""The asyncio client's calls that it lacked before issue 16 item 7, against a real daemon.

PIV: authenticate and piv_sign on the client, and authenticate / sign / transmit
on the session (virtual PIV card in vpcd). HSM: generate_key with the
extractable/usages parameters, sign_stream (SoftHSM2).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from clients_support import Gateway
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

import hwgate
import hwgate.aio
from hwgate.v1 import hsm_pb2
from hwgate_testbed.paths import PIV_PIN, vpcd_reader

pytestmark = pytest.mark.testbed
R0 = vpcd_reader(0)
ORIGIN = "https://enroll.example.gov"
SELECT_PIV = bytes.fromhex("00A4040009A0000003080000100000")


def origin_bound(origin: str, challenge: bytes) -> bytes:
    """What the daemon signs for Authenticate (see hwgated.piv.signing)."""
    inner = hashlib.sha256(origin.encode()).digest() + hashlib.sha256(challenge).digest()
    return hashlib.sha256(inner).digest()


def verify_ec(certificate: bytes, signature: bytes, digest: bytes) -> None:
    public = x509.load_der_x509_certificate(certificate).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_aio_piv_calls_on_client_and_session(gateway: Gateway, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]

    async def scenario() -> None:
        async with hwgate.aio.connect(gateway.admin) as client:
            await client.wait_ready()
            async with client.card_session(R0) as session:
                with pytest.raises(hwgate.PinRequired):
                    await session.authenticate(ORIGIN, os.urandom(32))
                await session.verify_pin(PIV_PIN, allow_last_attempt=False)

                challenge = os.urandom(32)
                auth = await session.authenticate(ORIGIN, challenge)
                assert auth.digest == origin_bound(ORIGIN, challenge)
                verify_ec(auth.certificate, auth.signature, auth.digest)
                again = await client.authenticate(session.session_id, ORIGIN, challenge)
                verify_ec(again.certificate, again.signature, auth.digest)

                digest = hashlib.sha256(b"async piv sign").digest()
                await session.verify_pin(PIV_PIN)  # 9C wants the PIN right before each use
                signed = await session.sign(digest, "ecdsa-sha256")
                verify_ec(signed.certificate, signed.signature, digest)
                await session.verify_pin(PIV_PIN)
                direct = await client.piv_sign(session.session_id, digest, "ecdsa-sha256")
                verify_ec(direct.certificate, direct.signature, digest)

                (reply,) = await session.transmit([SELECT_PIV], auto_response=True)
                assert reply.status_word == 0x9000

    asyncio.run(scenario())


def test_aio_generate_key_takes_all_parameters(gateway: Gateway) -> None:
    label = f"aio-gen-{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[hsm_pb2.KeyInfo, bytes, int]:
        async with hwgate.aio.connect(gateway.admin) as client:
            info = await client.generate_key(
                label,
                "ec-p256",
                ephemeral=True,
                extractable=False,
                usages=[hsm_pb2.KEY_USAGE_SIGN],
            )
            try:
                signature = await client.sign(label, "ecdsa-sha256", digest=b"\x01" * 32)
            finally:
                deleted = await client.delete_key(label)
            return info, signature, deleted

    info, signature, deleted = asyncio.run(scenario())
    assert info.label == label and not info.extractable
    assert hsm_pb2.KEY_USAGE_SIGN in info.usages
    assert hsm_pb2.KEY_USAGE_DERIVE not in info.usages
    assert signature and deleted >= 1


def test_aio_sign_stream_signs_and_reports_per_item_errors(gateway: Gateway) -> None:
    digests = [hashlib.sha256(bytes([i])).digest() for i in range(5)]

    def item(request_id: int, label: str, digest: bytes) -> hsm_pb2.SignStreamRequest:
        return hsm_pb2.SignStreamRequest(
            request_id=request_id,
            key=hsm_pb2.KeyRef(label=label),
            algorithm="SIGNATURE_ALGORITHM_ECDSA_SHA256",  # type: ignore[arg-type]
            digest=digest,
        )

    async def produce() -> AsyncIterator[hsm_pb2.SignStreamRequest]:
        for i, digest in enumerate(digests):
            yield item(i, "signer-p256", digest)
        yield item(99, "no-such-key", digests[0])

    async def scenario() -> tuple[list[hsm_pb2.SignStreamResponse], bytes, list[int]]:
        async with hwgate.aio.connect(gateway.admin) as client:
            responses = [r async for r in client.sign_stream(produce())]
            public = (await client.get_public_key("signer-p256")).der
            # A plain (sync) iterable works too; stopping early leaves nothing open.
            first = []
            async for response in client.sign_stream([item(7, "signer-p256", digests[1])] * 3):
                first.append(response.request_id)
                break
            assert await client.health() == "SERVING"
            return responses, public, first

    responses, der, first = asyncio.run(scenario())
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    public = load_der_public_key(der)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    by_id = {r.request_id: r for r in responses}
    assert sorted(by_id) == [0, 1, 2, 3, 4, 99]
    for i, digest in enumerate(digests):
        assert not by_id[i].HasField("error")
        public.verify(by_id[i].signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert by_id[99].HasField("error") and not by_id[99].signature
    assert first == [7]
