"""A descriptor database fed by server reflection: v1 first, v1alpha for older servers.

grpcio-reflection's ProtoReflectionDescriptorDatabase speaks only
``grpc.reflection.v1alpha``, which gRPC deprecated for ``grpc.reflection.v1``.
The two protocols are the same messages under two package names (identical
field numbers and types), so the v1alpha message classes serve for both; only
the method path differs. The first request tries v1; a server without it
(UNIMPLEMENTED) is asked over v1alpha from then on.
"""

from __future__ import annotations

import grpc
from google.protobuf.descriptor_database import DescriptorDatabase
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpc_reflection.v1alpha import reflection_pb2 as pb

V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"


class ReflectionDatabase(DescriptorDatabase):
    """Files, symbols and extensions fetched lazily from one server's reflection."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__()
        self._channel = channel
        self._candidates = [V1, V1ALPHA]
        self.service: str | None = None  # the reflection service that answered, once known
        self._extension_numbers: dict[str, list[int]] = {}

    def get_services(self) -> list[str]:
        reply = self._ask(pb.ServerReflectionRequest(list_services=""), "")
        return [service.name for service in reply.list_services_response.service]

    def FindFileByName(self, name: str) -> FileDescriptorProto:
        try:
            return super().FindFileByName(name)
        except KeyError:
            self._add(self._ask(pb.ServerReflectionRequest(file_by_filename=name), name))
            return super().FindFileByName(name)

    def FindFileContainingSymbol(self, symbol: str) -> FileDescriptorProto:
        try:
            return super().FindFileContainingSymbol(symbol)
        except KeyError:
            request = pb.ServerReflectionRequest(file_containing_symbol=symbol)
            self._add(self._ask(request, symbol))
            return super().FindFileContainingSymbol(symbol)

    def FindFileContainingExtension(
        self, extendee_name: str, extension_number: int
    ) -> FileDescriptorProto | None:
        try:
            return super().FindFileContainingExtension(extendee_name, extension_number)
        except KeyError:
            extension = pb.ExtensionRequest(
                containing_type=extendee_name, extension_number=extension_number
            )
            request = pb.ServerReflectionRequest(file_containing_extension=extension)
            self._add(self._ask(request, (extendee_name, extension_number)))
            return super().FindFileContainingExtension(extendee_name, extension_number)

    def FindAllExtensionNumbers(self, extendee_name: str) -> list[int]:
        if extendee_name not in self._extension_numbers:
            request = pb.ServerReflectionRequest(all_extension_numbers_of_type=extendee_name)
            reply = self._ask(request, extendee_name)
            numbers = list(reply.all_extension_numbers_response.extension_number)
            self._extension_numbers[extendee_name] = numbers
        return self._extension_numbers[extendee_name]

    def _ask(self, request: pb.ServerReflectionRequest, key: object) -> pb.ServerReflectionResponse:
        """One request, one response; an error response (NOT_FOUND …) is a KeyError."""
        reply = self._exchange(request)
        if reply.WhichOneof("message_response") == "error_response":
            raise KeyError(key)
        return reply

    def _exchange(self, request: pb.ServerReflectionRequest) -> pb.ServerReflectionResponse:
        while True:
            service = self._candidates[0]
            call = self._channel.stream_stream(
                f"/{service}/ServerReflectionInfo",
                request_serializer=pb.ServerReflectionRequest.SerializeToString,
                response_deserializer=pb.ServerReflectionResponse.FromString,
            )
            try:
                reply: pb.ServerReflectionResponse = next(iter(call(iter([request]))))
            except grpc.RpcError as err:
                fall_back = self.service is None and len(self._candidates) > 1
                if fall_back and err.code() == grpc.StatusCode.UNIMPLEMENTED:
                    self._candidates.pop(0)
                    continue
                raise
            self.service = service
            return reply

    def _add(self, reply: pb.ServerReflectionResponse) -> None:
        for raw in reply.file_descriptor_response.file_descriptor_proto:
            proto = FileDescriptorProto.FromString(raw)
            try:
                super().FindFileByName(proto.name)
            except KeyError:
                self.Add(proto)
