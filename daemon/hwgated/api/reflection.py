"""Server reflection, v1 and v1alpha, answering method symbols too.

grpcio-reflection (1.85) ships only ``grpc.reflection.v1alpha``; clients built
on newer gRPC libraries ask ``grpc.reflection.v1`` first. gRPC's v1
``reflection.proto`` is the v1alpha file under another package name: the same
messages with the same field numbers and types. So one servicer answers both
services (a v1 message parses as its v1alpha twin), and the v1 file descriptor,
needed only so reflection can describe itself, is the v1alpha one renamed at
import time rather than a vendored copy of gRPC's file.

The stock servicer asks the descriptor pool for the file containing a symbol,
and the pool knows messages, fields, enums and services but not methods: a
client asking for ``hwgate.v1.PivService.Authenticate`` (grpcurl ``describe``
of a method) got NOT_FOUND. The pool handed to the servicer falls back from a
method to its service's file, as the reflection spec requires
(``<package>.<service>[.<method>]``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

# Imported for its descriptors: clients decode an error's details (a
# google.rpc.ErrorInfo in an Any) by asking reflection for the type.
from google.rpc import error_details_pb2  # noqa: F401
from grpc_reflection.v1alpha import reflection as v1alpha_reflection
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer  # public as reflection.aio

V1ALPHA_SERVICE = v1alpha_reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
METHOD = "ServerReflectionInfo"


def v1_file_descriptor(pool: Any = None) -> descriptor.FileDescriptor:
    """``grpc/reflection/v1/reflection.proto`` in *pool* (default: the default pool).

    Added once, renamed from v1alpha; a pool that already has the file (a
    grpcio-reflection that ships v1, imported first) keeps its own.
    """
    pool = pool or descriptor_pool.Default()
    try:
        return pool.FindFileByName(V1_FILE)
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    v1alpha_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{proto.package}.", f".{V1_PACKAGE}."
    proto.name, proto.package = V1_FILE, V1_PACKAGE
    proto.ClearField("options")  # java/go package names and v1alpha's `deprecated`
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # setting it on a scalar field is an error
                field.type_name = field.type_name.replace(old, new, 1)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new, 1)
            method.output_type = method.output_type.replace(old, new, 1)
    pool.AddSerializedFile(proto.SerializeToString())
    return pool.FindFileByName(V1_FILE)


class MethodAwarePool:
    """A descriptor pool whose ``FindFileContainingSymbol`` also knows methods.

    Everything else is delegated to the wrapped pool unchanged.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> descriptor.FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                service = None
            if service is None or method not in service.methods_by_name:
                raise
            return service.file


def enable(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection for *service_names* (plus both reflection services) on *server*."""
    pool = descriptor_pool.Default()
    v1_file_descriptor(pool)
    names = (*service_names, V1_SERVICE, V1ALPHA_SERVICE)
    servicer = ReflectionServicer(names, pool=MethodAwarePool(pool))
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=v1alpha_pb2.ServerReflectionRequest.FromString,
        response_serializer=v1alpha_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        tuple(
            grpc.method_handlers_generic_handler(service, {METHOD: handler})
            for service in (V1_SERVICE, V1ALPHA_SERVICE)
        )
    )
