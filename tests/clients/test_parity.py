"""The blocking and asyncio clients offer the same calls (issue 16 item 7).

Driven by the generated descriptors: an RPC added to a .proto fails here until
both clients (and their sessions, where the call takes a session) have it.
"""

from __future__ import annotations

import datetime
import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.protobuf.descriptor import MethodDescriptor

import hwgate.v1
from hwgate import requests as rq
from hwgate.aio import AsyncCardSession, AsyncClient
from hwgate.client import CardSession, Client
from hwgate.v1 import card_pb2, hsm_pb2, piv_pb2

# RPCs whose client method is not simply the snake_case RPC name.
METHOD_NAMES = {"hwgate.v1.PivService.Sign": "piv_sign"}


def method_name(rpc: MethodDescriptor) -> str:
    return METHOD_NAMES.get(rpc.full_name, re.sub(r"(?<!^)(?=[A-Z])", "_", rpc.name).lower())


def all_rpcs() -> Iterator[MethodDescriptor]:
    for module in pkgutil.iter_modules(hwgate.v1.__path__):
        if module.name.endswith("_pb2"):
            descriptor = importlib.import_module(f"hwgate.v1.{module.name}").DESCRIPTOR
            for service in descriptor.services_by_name.values():
                yield from service.methods


RPCS = sorted(all_rpcs(), key=lambda m: m.full_name)


def shape(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """Parameter names, kinds and defaults: what callers depend on (not annotations)."""
    params = inspect.signature(function).parameters.values()
    return [(p.name, p.kind, p.default) for p in params]


def test_the_descriptors_list_every_service() -> None:
    services = {m.containing_service.full_name for m in RPCS}
    assert services == {"hwgate.v1.CardService", "hwgate.v1.PivService", "hwgate.v1.HsmService"}


@pytest.mark.parametrize("rpc", RPCS, ids=lambda m: m.full_name)
def test_both_clients_offer_every_rpc_with_the_same_signature(rpc: MethodDescriptor) -> None:
    name = method_name(rpc)
    sync, aio = getattr(Client, name, None), getattr(AsyncClient, name, None)
    assert sync is not None, f"hwgate.Client lacks {name} for {rpc.full_name}"
    assert aio is not None, f"hwgate.aio.AsyncClient lacks {name} for {rpc.full_name}"
    assert shape(sync) == shape(aio)
    assert not inspect.iscoroutinefunction(sync) and not inspect.isasyncgenfunction(sync)
    if rpc.server_streaming:  # an async iterator, not a coroutine
        assert not inspect.iscoroutinefunction(aio)
    else:
        assert inspect.iscoroutinefunction(aio)


def public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    return {n: f for n, f in inspect.getmembers(cls, callable) if not n.startswith("_")}


def test_the_clients_have_the_same_public_methods() -> None:
    sync, aio = public_methods(Client), public_methods(AsyncClient)
    # hsm_key wraps cryptography's synchronous sign(); it cannot be async.
    assert set(sync) - {"hsm_key"} == set(aio)
    for name in aio:
        assert shape(sync[name]) == shape(aio[name]), name


def test_sessions_have_the_same_methods_and_fields() -> None:
    sync, aio = public_methods(CardSession), public_methods(AsyncCardSession)
    assert (
        set(sync)
        == set(aio)
        == {
            "authenticate",
            "change_pin",
            "get_card_info",
            "sign",
            "transmit",
            "unblock_pin",
            "verify_pin",
        }
    )
    for name in sync:
        assert shape(sync[name]) == shape(aio[name]), name
        assert inspect.iscoroutinefunction(aio[name]) and not inspect.iscoroutinefunction(
            sync[name]
        )
    fields = CardSession.__dataclass_fields__.keys()
    assert fields == AsyncCardSession.__dataclass_fields__.keys()


def test_every_session_rpc_is_on_the_session() -> None:
    """An RPC whose request has a session_id and nothing that replaces it is a session call."""
    session_calls = {m for m in public_methods(CardSession)}
    for rpc in RPCS:
        fields = rpc.input_type.fields_by_name
        if "session_id" in fields and rpc.name not in {"CloseSession"}:
            expected = "sign" if rpc.full_name == "hwgate.v1.PivService.Sign" else method_name(rpc)
            assert expected in session_calls, rpc.full_name


def test_methods_carry_the_request_functions_documentation() -> None:
    assert Client.verify_pin.__doc__ == AsyncClient.verify_pin.__doc__ == rq.verify_pin.__doc__
    assert Client.verify_pin.__name__ == "verify_pin"
    assert CardSession.verify_pin.__name__ == "verify_pin"
    params = list(inspect.signature(CardSession.verify_pin).parameters)
    assert params == ["self", "pin", "allow_last_attempt"]


# --- the request functions themselves ---


def test_request_functions_build_the_messages() -> None:
    call = rq.verify_pin("s1", "123456", allow_last_attempt=True)
    assert (call.stub, call.method) == ("piv", "VerifyPin")
    assert call.request == piv_pb2.VerifyPinRequest(
        session_id="s1", pin=b"123456", allow_last_attempt=True
    )
    response = piv_pb2.VerifyPinResponse()
    response.session_expire_time.FromSeconds(1_900_000_000)
    assert call.result(response) == datetime.datetime.fromtimestamp(1_900_000_000, datetime.UTC)

    call = rq.generate_key("k", "ec-p256", extractable=True, usages=[1])
    assert call.request.label == "k" and call.request.extractable
    assert list(call.request.usages) == [1]
    info = hsm_pb2.KeyInfo(label="k")
    assert call.result(hsm_pb2.GenerateKeyResponse(key=info)) == info

    call = rq.session_transmit("s2", [b"\x00\xa4"], auto_response=True)
    assert call.request == card_pb2.TransmitRequest(
        session_id="s2", apdus=[b"\x00\xa4"], auto_response=True
    )
    assert rq.open_session("r", ttl=1.5).request.ttl.ToNanoseconds() == 1_500_000_000
    assert not rq.open_session("r").request.HasField("ttl")
    assert (
        rq.sign("k", "ecdsa-sha256", digest=b"d").result(
            hsm_pb2.HsmServiceSignResponse(signature=b"s")
        )
        == b"s"
    )


def test_session_sign_uses_the_piv_service() -> None:
    call = rq.session_sign("s", b"\x01" * 32, "ecdsa-sha256", piv_pb2.SLOT_DIGITAL_SIGNATURE)
    assert (call.stub, call.method) == ("piv", "Sign")
    assert call.request.session_id == "s" and call.request.slot == piv_pb2.SLOT_DIGITAL_SIGNATURE
