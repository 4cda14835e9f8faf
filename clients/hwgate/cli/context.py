"""The connection the global options describe, opened once per command."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import grpc

from hwgate.channel import channel_spec, open_channel
from hwgate.client import Client


class NotConnected(Exception):
    """The target did not answer within --connect-timeout (exit code 1)."""


def parse_header(text: str) -> tuple[str, str]:
    """``-H 'name: value'`` -> (name, value); gRPC metadata keys are lower case."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header {text!r} is not 'name: value'")
    return name.strip().lower(), value.strip()


@dataclass
class Context:
    """Global options plus the lazily opened channel."""

    args: argparse.Namespace
    _channel: grpc.Channel | None = field(default=None, init=False)

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return list(self.args.header or [])

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            a = self.args
            spec = channel_spec(
                a.addr,
                cacert=a.cacert,
                cert=a.cert,
                key=a.key,
                plaintext=a.plaintext,
                server_name=a.servername,
                health_service=None,  # one-shot commands: no health-gated picking
            )
            channel = open_channel(spec)
            try:
                grpc.channel_ready_future(channel).result(timeout=a.connect_timeout)
            except grpc.FutureTimeoutError:
                channel.close()
                raise NotConnected(
                    f"cannot connect to {spec.target.uri} within {a.connect_timeout}s"
                ) from None
            self._channel = channel
        return self._channel

    def client(self) -> Client:
        return Client(self.channel(), timeout=self.args.max_time, metadata=self.metadata)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
