"""Pure parts of the client: error mapping, names, targets, service config, resume rules."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import hwgate
from hwgate import channel, errors, names
from hwgate.resume import ResumeState, resumable
from hwgate.v1 import card_pb2, common_pb2, error_pb2


def test_every_reason_has_its_own_class() -> None:
    reasons = [n for n in error_pb2.ErrorReason.keys() if n != "ERROR_REASON_UNSPECIFIED"]  # noqa: SIM118
    classes = [errors.REASON_CLASSES[r] for r in reasons]
    assert len(set(classes)) == len(reasons)
    assert all(issubclass(c, hwgate.HwgateError) and c is not hwgate.HwgateError for c in classes)
    assert errors.REASON_CLASSES["CARD_REMOVED"] is hwgate.CardRemoved
    assert errors.REASON_CLASSES["HSM_LOGIN_FAILED"].__name__ == "HsmLoginFailed"


def test_session_expired_is_still_a_session_not_found() -> None:
    """Code that caught SessionNotFound for an expired session keeps catching it."""
    assert errors.REASON_CLASSES["SESSION_EXPIRED"] is hwgate.SessionExpired
    assert issubclass(hwgate.SessionExpired, hwgate.SessionNotFound)


def _trailers(reason: str, **metadata: str) -> tuple[tuple[str, bytes], ...]:
    info = error_details_pb2.ErrorInfo(reason=reason, domain="hwgate.v1", metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=9, message="m", details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)


def test_error_info_becomes_the_reason_class() -> None:
    reason, metadata = errors.error_info_of(_trailers("PIN_INCORRECT", retries_left="2"))
    exc = errors.from_status(grpc.StatusCode.FAILED_PRECONDITION, "wrong", reason, metadata)
    assert isinstance(exc, hwgate.PinIncorrect) and exc.retries_left == 2
    unknown = errors.from_status(grpc.StatusCode.INTERNAL, "x", "FROM_THE_FUTURE", {})
    assert type(unknown) is hwgate.HwgateError and unknown.reason == "FROM_THE_FUTURE"
    assert errors.error_info_of(()) == ("", {})


def test_algorithm_names() -> None:
    sig = common_pb2
    assert names.signature_algorithm("ecdsa-sha256") == sig.SIGNATURE_ALGORITHM_ECDSA_SHA256
    assert names.signature_algorithm("RSA_PSS_SHA384") == sig.SIGNATURE_ALGORITHM_RSA_PSS_SHA384
    assert "rsa-pkcs1-sha512" in names.kebab_choices(sig.SignatureAlgorithm, names.SIG_PREFIX)
    with pytest.raises(ValueError, match="ecdsa-sha256"):
        names.signature_algorithm("ecdsa-md5")
    assert names.key_algorithm("ec-p256") == common_pb2.KEY_ALGORITHM_EC_P256
    assert names.key_ref("pkcs11:object=x").uri == "pkcs11:object=x"
    assert names.key_ref("id:0a0b").id == b"\x0a\x0b"
    assert names.key_ref("signer-p256", token="t").label == "signer-p256"


def test_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HWGATE_ADDR", raising=False)
    assert channel.resolve_target(None).uri == "unix:///run/hwgate/hwgate.sock"
    monkeypatch.setenv("HWGATE_ADDR", "unix:///tmp/x.sock")
    assert channel.resolve_target(None) == channel.Target("unix:///tmp/x.sock", tcp=False)
    assert channel.resolve_target("gw.example:7443").uri == "dns:///gw.example:7443"
    both = channel.resolve_target("127.0.0.1:1,127.0.0.2:2")
    assert both.uri == "ipv4:127.0.0.1:1,127.0.0.2:2" and both.tcp


def test_service_config_retries_only_idempotent_reads() -> None:
    config = channel.service_config("hwgate.v1.HsmService")
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": "hwgate.v1.HsmService"}
    (method_config,) = config["methodConfig"]
    retried = {(n["service"], n["method"]) for n in method_config["name"]}
    assert ("hwgate.v1.CardService", "ListReaders") in retried
    assert ("hwgate.v1.HsmService", "GetPublicKey") in retried
    for never in ("VerifyPin", "Sign", "Derive", "OpenSession", "Transmit"):
        assert all(m != never for _, m in retried)
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    json.dumps(config)  # valid as a channel argument


@pytest.mark.parametrize("target", ["unix:/run/hwgate/hwgate.sock", "127.0.0.1:7443"])
def test_channels_try_a_restarted_daemon_again_within_seconds(target: str) -> None:
    """grpc's own reconnect backoff grows to 120 s: a kiosk whose hwgated restarted
    stayed offline long after the daemon was back. Every channel the library opens
    caps it."""
    spec = channel.channel_spec(target, plaintext=True)
    options = dict(spec.options)
    assert options["grpc.max_reconnect_backoff_ms"] <= 2_000


def _event(seq: int, kind: int, snapshot: bool = False) -> card_pb2.WatchEventsResponse:
    return card_pb2.WatchEventsResponse(sequence=seq, type=kind, snapshot=snapshot)  # type: ignore[arg-type]


def test_resume_point_moves_at_snapshot_complete_and_drops_repeats() -> None:
    state = ResumeState()
    assert state.accept(_event(10, card_pb2.EVENT_TYPE_READER_STATE, snapshot=True))
    assert state.after_sequence == 0  # an unfinished snapshot is not a resume point
    assert state.accept(_event(10, card_pb2.EVENT_TYPE_SNAPSHOT_COMPLETE, snapshot=True))
    assert state.after_sequence == 10
    assert state.accept(_event(11, card_pb2.EVENT_TYPE_CARD_INSERTED))
    assert not state.accept(_event(11, card_pb2.EVENT_TYPE_CARD_INSERTED))  # replayed twice
    assert state.request().after_sequence == 11


def test_which_stream_endings_resume() -> None:
    C = grpc.StatusCode
    assert resumable(hwgate.HwgateError(C.UNAVAILABLE, "restart"))
    assert resumable(hwgate.SubscriberTooSlow(C.RESOURCE_EXHAUSTED, "", "SUBSCRIBER_TOO_SLOW"))
    assert not resumable(hwgate.PolicyDenied(C.PERMISSION_DENIED, "", "POLICY_DENIED"))
