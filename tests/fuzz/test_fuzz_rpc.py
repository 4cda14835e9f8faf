"""A storm of hostile requests against a running hwgated: it answers each one with a
proper status, never INTERNAL/UNKNOWN, and keeps serving afterwards.

Two layers: random bytes as the serialized request (protobuf decoding at the
edge: a request that is not protobuf must end the call with INVALID_ARGUMENT,
never OK), and well-formed messages with random field values (the servicers'
validation). The fuzzing role may call every hwgate.v1 method except those that
would destroy the shared test bed token (DeleteKey, GenerateKey).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fuzz_support import fuzz_settings
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import given
from hypothesis import strategies as st

from hwgate.v1 import card_pb2, card_pb2_grpc, common_pb2, hsm_pb2, hsm_pb2_grpc, piv_pb2
from hwgate_testbed.paths import SOFTHSM_MODULE, TOKEN_LABEL
from support.daemon import DaemonProc, start_daemon

pytestmark = [pytest.mark.fuzz, pytest.mark.testbed]

EXCLUDED = {"DeleteKey", "GenerateKey"}
METHODS: list[pb_descriptor.MethodDescriptor] = [
    m
    for file in (card_pb2, piv_pb2, hsm_pb2)
    for service in file.DESCRIPTOR.services_by_name.values()
    for m in service.methods
    if m.name not in EXCLUDED
]
BUGS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
FD = pb_descriptor.FieldDescriptor


def path(method: pb_descriptor.MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def render_config(directory: Path, testbed: Any) -> Path:
    q = json.dumps
    paths = testbed.paths
    allow = [f"{m.containing_service.full_name}/{m.name}" for m in METHODS]
    text = f"""
[daemon]
grace_period = 1
[[listen]]
unix = {q(str(directory / "fuzz.sock"))}
role = "fuzzer"
[[hsm.token]]
name = "testbed"
module = {q(str(SOFTHSM_MODULE))}
token_label = {q(TOKEN_LABEL)}
pin_file = {q(str(paths.user_pin))}
workers = 1
env = {{ SOFTHSM2_CONF = {q(str(paths.softhsm_conf))} }}
[audit]
file = "audit.jsonl"
[policy.roles.fuzzer]
allow = {q(allow)}
[[policy.keys]]
pattern = "*"
roles = ["fuzzer"]
create = ["fuzzer"]
[[policy.readers]]
pattern = "*"
roles = ["fuzzer"]
"""
    config = directory / "hwgated.toml"
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def fuzzd(testbed: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    directory = tmp_path_factory.mktemp("fuzzd")
    daemon = start_daemon(
        render_config(directory, testbed), directory / "fuzz.sock", directory / "hwgated.log"
    )
    yield daemon
    assert daemon.proc.poll() is None, "hwgated died during the storm"
    daemon.stop(signal.SIGTERM)


@pytest.fixture(scope="module")
def channel(fuzzd: DaemonProc) -> Iterator[grpc.Channel]:
    with fuzzd.channel() as ch:
        yield ch


def decodable(method: pb_descriptor.MethodDescriptor, raw: bytes) -> bool:
    """Whether *raw* parses as the method's request message (the same upb the server uses)."""
    try:
        message_factory.GetMessageClass(method.input_type).FromString(raw)
    except DecodeError:
        return False
    return True


def invoke(channel: grpc.Channel, method: pb_descriptor.MethodDescriptor, raw: list[bytes]) -> None:
    """Send *raw* serialized request(s) with identity serializers; check the outcome.

    Never INTERNAL/UNKNOWN; and a call or stream that was sent a message that is not
    protobuf for the method must not end OK: INVALID_ARGUMENT, whatever came before.
    """
    name = path(method)
    sent = raw if method.client_streaming else raw[:1]
    garbage = not all(decodable(method, r) for r in sent)
    try:
        if method.client_streaming:
            call = channel.stream_stream(name, None, None)(iter(raw), timeout=5)
            for _ in call:
                pass
        elif method.server_streaming:
            # WatchEvents never ends on its own: read what comes first, then cancel.
            stream = channel.unary_stream(name, None, None)(raw[0], timeout=5)
            try:
                next(iter(stream), None)
            finally:
                stream.cancel()
        else:
            channel.unary_unary(name, None, None)(raw[0], timeout=5)
    except grpc.RpcError as err:
        code = err.code()
        assert code not in BUGS, f"{name}: {code} {err.details()} for {raw!r}"
        if garbage:
            assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{name}: {code} for {raw!r}"
        return
    assert not garbage, f"{name} answered OK to a request that is not protobuf: {raw!r}"


def assert_serving(channel: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    readers = card_pb2_grpc.CardServiceStub(channel).ListReaders(
        card_pb2.ListReadersRequest(), timeout=10
    )
    assert readers.readers
    keys = hsm_pb2_grpc.HsmServiceStub(channel).ListKeys(hsm_pb2.ListKeysRequest(), timeout=10)
    assert "issuing-ca" in {k.label for k in keys.keys}


METHOD_INDEX = st.sampled_from(range(len(METHODS)))


@fuzz_settings(2)
@given(METHOD_INDEX, st.lists(st.binary(max_size=200), min_size=1, max_size=4))
def test_random_bytes_as_requests(channel: grpc.Channel, which: int, raw: list[bytes]) -> None:
    invoke(channel, METHODS[which], raw)


SIGN_STREAM = next(m for m in METHODS if m.name == "SignStream")
GOOD_SIGN = hsm_pb2.SignStreamRequest(
    request_id=1,
    key=hsm_pb2.KeyRef(label="signer-p256"),
    algorithm=common_pb2.SIGNATURE_ALGORITHM_ECDSA_SHA256,
    digest=bytes(32),
).SerializeToString()


@fuzz_settings(1)
@given(
    st.binary(min_size=1, max_size=60).filter(lambda b: not decodable(SIGN_STREAM, b)),
    st.integers(0, 3),
    st.integers(0, 3),
)
def test_garbage_inside_a_good_sign_stream(
    channel: grpc.Channel, garbage: bytes, before: int, after: int
) -> None:
    """[good..., garbage, good...] must end INVALID_ARGUMENT (it used to end OK)."""
    invoke(channel, SIGN_STREAM, [GOOD_SIGN] * before + [garbage] + [GOOD_SIGN] * after)


# ---- well-formed messages with hostile field values -----------------------------------------

SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FD.TYPE_STRING: st.one_of(
        st.sampled_from(
            [
                "",
                "*",
                "issuing-ca",
                "signer-p256",
                "hmac-key",
                "Virtual PCD 00 00",
                "pkcs11:object=issuing-ca;type=private",
                "testbed",
                "../x",
                "\x00",
            ]
        ),
        st.text(max_size=40),
    ),
    FD.TYPE_BYTES: st.one_of(st.binary(max_size=80), st.sampled_from([b"", b"\x01", bytes(32)])),
    FD.TYPE_BOOL: st.booleans(),
    FD.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FD.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FD.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FD.TYPE_DOUBLE: st.floats(),
    FD.TYPE_FLOAT: st.floats(width=32),
}


def message_value(desc: pb_descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """A strategy for a message of type *desc*, every field random or absent."""
    cls = message_factory.GetMessageClass(desc)

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        msg = cls()
        for field in desc.fields:
            if not draw(st.booleans()):
                continue
            values = field_values(field, depth)
            if field.is_repeated:
                for value in draw(st.lists(values, max_size=3)):
                    if field.type == FD.TYPE_MESSAGE:
                        getattr(msg, field.name).add().CopyFrom(value)
                    else:
                        getattr(msg, field.name).append(value)
            elif field.type == FD.TYPE_MESSAGE:
                getattr(msg, field.name).CopyFrom(draw(values))
            else:
                setattr(msg, field.name, draw(values))
        return msg

    return build()


def field_values(field: pb_descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_MESSAGE:
        assert field.message_type is not None
        if depth > 2:
            return st.just(message_factory.GetMessageClass(field.message_type)())
        return message_value(field.message_type, depth + 1)
    if field.type == FD.TYPE_ENUM:
        assert field.enum_type is not None
        numbers = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(numbers), st.integers(-5, 1000))
    return SCALARS[field.type]


@st.composite
def method_and_messages(draw: st.DrawFn) -> tuple[int, list[bytes]]:
    which = draw(METHOD_INDEX)
    strategy = message_value(METHODS[which].input_type)
    messages = draw(st.lists(strategy, min_size=1, max_size=3))
    return which, [m.SerializeToString() for m in messages]


@fuzz_settings(3)
@given(method_and_messages())
def test_random_field_values(channel: grpc.Channel, case: tuple[int, list[bytes]]) -> None:
    which, raw = case
    invoke(channel, METHODS[which], raw)


def test_daemon_still_serves_after_the_storm(fuzzd: DaemonProc, channel: grpc.Channel) -> None:
    assert fuzzd.proc.poll() is None
    assert_serving(channel)
    log = fuzzd.log.read_text(errors="replace")
    assert "Traceback" not in log or "INTERNAL" not in log
