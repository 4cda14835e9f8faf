"""Generic gRPC through server reflection: list, describe, call any method.

Nothing here knows hwgate: message classes are built at run time from the
descriptors the server returns (ReflectionDatabase -> DescriptorPool ->
message_factory.GetMessageClass), so the same code works against any gRPC
server that enables reflection, v1 or only the older v1alpha.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

from hwgate.cli.reflection_db import ReflectionDatabase


class SymbolNotFound(LookupError):
    """The server's reflection does not know the symbol."""


class Reflection:
    """Descriptors of one server, fetched lazily over its reflection service."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.database = ReflectionDatabase(channel)
        self.pool = descriptor_pool.DescriptorPool(self.database)

    def services(self) -> list[str]:
        return sorted(self.database.get_services())

    def service(self, name: str) -> descriptor.ServiceDescriptor:
        try:
            return self.pool.FindServiceByName(name)
        except KeyError:
            raise SymbolNotFound(f"service {name!r} not found") from None

    def method(self, full_name: str) -> descriptor.MethodDescriptor:
        """``pkg.Service/Method`` or ``pkg.Service.Method``."""
        service, sep, method = full_name.replace("/", ".").rpartition(".")
        if not sep:
            raise SymbolNotFound(f"{full_name!r} is not SERVICE/METHOD")
        found = self.service(service).methods_by_name.get(method)
        if found is None:
            raise SymbolNotFound(f"method {method!r} not in {service}")
        return found

    def symbol(self, name: str) -> Any:
        """A service, method, message, enum or field descriptor named *name*."""
        name = name.lstrip(".")
        lookups = (
            self.pool.FindServiceByName,
            self.method,
            self.pool.FindMessageTypeByName,
            self.pool.FindEnumTypeByName,
            self.pool.FindFieldByName,
        )
        for lookup in lookups:
            try:
                return lookup(name)
            except (KeyError, SymbolNotFound):
                continue
        raise SymbolNotFound(f"symbol {name!r} not found")

    def message_class(self, desc: descriptor.Descriptor) -> type[Message]:
        return message_factory.GetMessageClass(desc)


def parse_requests(text: str, cls: type[Message]) -> list[Message]:
    """JSON objects (one, several concatenated, or none = one empty) as messages."""
    decoder, pos, out = json.JSONDecoder(), 0, []
    text = text.strip()
    while pos < len(text):
        obj, end = decoder.raw_decode(text, pos)
        out.append(json_format.ParseDict(obj, cls()))
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out or [cls()]


def invoke(
    reflection: Reflection,
    method: descriptor.MethodDescriptor,
    requests: Sequence[Message],
    *,
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float | None = None,
) -> tuple[Any, Any]:
    """Call *method* with *requests*; (responses, call) — cancel the call to stop a stream."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    out_cls = reflection.message_class(method.output_type)
    kwargs: dict[str, Any] = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": out_cls.FromString,
    }
    md = tuple(metadata) or None
    channel = reflection.channel
    if method.client_streaming:
        if method.server_streaming:
            call = channel.stream_stream(path, **kwargs)(iter(requests), metadata=md,
                                                         timeout=timeout)  # fmt: skip
            return call, call
        future = channel.stream_unary(path, **kwargs).future(
            iter(requests), metadata=md, timeout=timeout
        )
        return iter([future.result()]), future
    if len(requests) != 1:
        raise ValueError(f"{method.name} takes exactly one request message, got {len(requests)}")
    if method.server_streaming:
        call = channel.unary_stream(path, **kwargs)(requests[0], metadata=md, timeout=timeout)
        return call, call
    future = channel.unary_unary(path, **kwargs).future(requests[0], metadata=md, timeout=timeout)
    return iter([future.result()]), future
