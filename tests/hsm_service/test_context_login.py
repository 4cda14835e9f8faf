"""Keys with CKA_ALWAYS_AUTHENTICATE: every signature needs a context-specific login.

PIV-backed modules and many HSMs mark signing keys this way. The key is made
here, on the test bed's SoftHSM2 token, by another PKCS#11 application (this
test process, through python-pkcs11), as an HSM administrator would; hwgated
then signs with it, presenting the token PIN with C_Login(CKU_CONTEXT_SPECIFIC)
between C_SignInit and C_Sign, and the signatures verify.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterator

import grpc
import pytest
from hsm_service_support import label, public_key, verify
from pkcs11 import Attribute, KeyType
from pkcs11.util.ec import encode_named_curve_parameters

from hwgate.v1 import common_pb2, hsm_pb2
from hwgate_testbed import softhsm

pytestmark = pytest.mark.testbed


def _make_keys(testbed: object, name: str) -> None:
    """An EC P-256 and an RSA pair whose private halves need a login per use (RSA-1024:
    the login path is the key size's business no more than the mechanism's, and
    SoftHSM makes it in a fraction of RSA-2048's 1-4 s on a busy machine)."""
    private = {
        Attribute.ALWAYS_AUTHENTICATE: True,
        Attribute.SIGN: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
    }
    public = {Attribute.VERIFY: True}
    with softhsm.user_session(testbed.paths, rw=True) as session:  # type: ignore[attr-defined]
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        for alg, kw in (
            ("ec", {}),
            ("rsa", {}),
        ):
            common = {"label": f"{name}-{alg}", "id": uuid.uuid4().bytes, "store": True, **kw}
            if alg == "ec":
                params.generate_keypair(public_template=public, private_template=private, **common)
            else:
                session.generate_keypair(
                    KeyType.RSA, 1024, public_template=public, private_template=private,
                    **common,
                )  # fmt: skip
        for obj in session.get_objects({Attribute.LABEL: f"{name}-ec", Attribute.SIGN: True}):
            assert obj[Attribute.ALWAYS_AUTHENTICATE], "SoftHSM did not keep the flag"


@pytest.fixture(scope="module")
def always_auth(testbed: object, hsmd) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"svc-aa-{uuid.uuid4().hex[:8]}"
    _make_keys(testbed, name)
    yield name
    stub = hsmd.stub()
    for alg in ("ec", "rsa"):
        with contextlib.suppress(grpc.RpcError):
            stub.DeleteKey(hsm_pb2.DeleteKeyRequest(key=label(f"{name}-{alg}")))


@pytest.mark.parametrize(
    ("alg", "algorithm"),
    [("ec", "ECDSA_SHA256"), ("rsa", "RSA_PKCS1_SHA256"), ("rsa", "RSA_PSS_SHA256")],
)
def test_sign_with_always_authenticate_key(hsmd, always_auth: str, alg: str, algorithm: str):  # type: ignore[no-untyped-def]
    stub = hsmd.stub()
    ref = label(f"{always_auth}-{alg}")
    digest = hashlib.sha256(algorithm.encode()).digest()
    answer = stub.Sign(
        hsm_pb2.HsmServiceSignRequest(
            key=ref,
            algorithm=getattr(common_pb2, f"SIGNATURE_ALGORITHM_{algorithm}"),
            digest=digest,
        )
    )
    verify(public_key(stub, ref), algorithm, answer.signature, digest)


def test_batch_logs_in_for_every_signature(hsmd, always_auth: str) -> None:  # type: ignore[no-untyped-def]
    """A batch is several operations: each gets its own context-specific login."""
    stub = hsmd.stub()
    ref = label(f"{always_auth}-ec")
    digests = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    request = hsm_pb2.SignStreamRequest(
        request_id=1, key=ref, algorithm=common_pb2.SIGNATURE_ALGORITHM_ECDSA_SHA256,
        digest_batch=hsm_pb2.DigestBatch(digests=digests),
    )  # fmt: skip
    (reply,) = list(stub.SignStream(iter([request])))
    assert reply.WhichOneof("result") == "signature_batch", reply
    public = public_key(stub, ref)
    for digest, signature in zip(digests, reply.signature_batch.signatures, strict=True):
        verify(public, "ECDSA_SHA256", signature, digest)
