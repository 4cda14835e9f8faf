"""Helpers for PivService tests: a daemon with an audit file, sessions, signature checks."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from hwgate.v1 import card_pb2, card_pb2_grpc, piv_pb2, piv_pb2_grpc
from support.daemon import DaemonProc, error_info, start_daemon, write_config

PIN = b"123456"
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}


@dataclass
class PivDaemon:
    """A running hwgated (debug log, JSON audit file) and stubs on its kiosk socket."""

    daemon: DaemonProc
    audit_file: Path
    channel: grpc.Channel = field(init=False)

    def __post_init__(self) -> None:
        self.channel = self.daemon.channel()
        self.piv = piv_pb2_grpc.PivServiceStub(self.channel)
        self.card = card_pb2_grpc.CardServiceStub(self.channel)

    def open_session(self, reader: str) -> str:
        request = card_pb2.OpenSessionRequest(reader=reader)
        return str(self.card.OpenSession(request, timeout=10).session_id)

    def close_session(self, session_id: str) -> None:
        self.card.CloseSession(card_pb2.CloseSessionRequest(session_id=session_id), timeout=10)

    def verify(self, session_id: str, pin: bytes = PIN, allow_last: bool = False) -> bool:
        """True once the PIN is verified (a failure raises); the response names
        when the session, and so the verified PIN, ends."""
        request = piv_pb2.VerifyPinRequest(
            session_id=session_id, pin=pin, allow_last_attempt=allow_last
        )
        return self.piv.VerifyPin(request, timeout=10).HasField("session_expire_time")

    def info(self, **target: str) -> piv_pb2.GetCardInfoResponse:
        return self.piv.GetCardInfo(piv_pb2.GetCardInfoRequest(**target), timeout=10)

    def audit_records(self) -> list[dict[str, Any]]:
        if not self.audit_file.exists():
            return []
        return [json.loads(line) for line in self.audit_file.read_text().splitlines()]

    def stop(self) -> None:
        self.channel.close()
        self.daemon.stop(signal.SIGKILL)


def start_piv_daemon(
    directory: Path, verify_pin_per_minute: int = 1000, log_level: str = "debug"
) -> PivDaemon:
    audit_file = directory / "audit.jsonl"
    extra = (
        f'[audit]\nfile = "{audit_file}"\n'
        f"[limits]\nverify_pin_per_minute = {verify_pin_per_minute}\n"
    )
    config, kiosk, _admin = write_config(
        directory, pcsc="max_session_ttl = 30", extra=extra, log_level=log_level
    )
    daemon = start_daemon(config, kiosk, directory / "hwgated.log")
    return PivDaemon(daemon, audit_file)


def failure(call: Any) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """Run *call*; it must fail; its (code, reason, metadata)."""
    try:
        call()
    except grpc.RpcError as err:
        return error_info(err)
    raise AssertionError("the call succeeded but was expected to fail")


def verify_with_certificate(
    certificate_der: bytes, signature: bytes, digest: bytes, algorithm: str
) -> None:
    """Raise InvalidSignature unless *signature* over *digest* verifies (algorithm: enum name)."""
    key = x509.load_der_x509_certificate(certificate_der).public_key()
    name = algorithm.removeprefix("SIGNATURE_ALGORITHM_")
    prehashed = Prehashed(HASHES[name.rsplit("_", 1)[1]]())
    if name.startswith("ECDSA"):
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(signature, digest, ec.ECDSA(prehashed))
        return
    assert isinstance(key, rsa.RSAPublicKey)
    if name.startswith("RSA_PSS"):
        hash_cls = HASHES[name.rsplit("_", 1)[1]]
        pad: padding.AsymmetricPadding = padding.PSS(
            mgf=padding.MGF1(hash_cls()), salt_length=hash_cls().digest_size
        )
    else:
        pad = padding.PKCS1v15()
    key.verify(signature, digest, pad, prehashed)
