"""The connection the global options describe, opened once per command."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import grpc

from hwgate import readiness
from hwgate.channel import ChannelSpec, channel_spec, open_channel
from hwgate.cli import connectivity
from hwgate.client import Client


class NotConnected(Exception):
    """The target did not answer within --connect-timeout (exit code 1)."""


def parse_header(text: str) -> tuple[str, str]:
    """``-H 'name: value'`` -> (name, value); gRPC metadata keys are lower case."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header {text!r} is not 'name: value'")
    return name.strip().lower(), value.strip()


def _wait_ready(
    channel: grpc.Channel, spec: ChannelSpec, timeout: float, *, plaintext: bool
) -> None:
    """Wait until *channel* reaches the server; on the first failed attempt look once at
    what is listening, and give up at once if waiting cannot help (TLS against plaintext
    or the reverse). At the timeout the error carries the best hint found.

    Readiness is asked with Health/Check calls (hwgate.readiness), not with a
    connectivity subscription: grpc's polling thread behind one outlives it and, when
    the command closes its channel at once, dies with "Channel closed!" on stderr."""
    deadline = time.monotonic() + timeout
    hint: str | None = None
    found = readiness.probe(channel, timeout, wait_for_ready=False)
    if found is readiness.Probe.FAILED:
        hint = connectivity.diagnose(spec.target.uri, spec.target.tcp, plaintext=plaintext)
        if not connectivity.is_certain(hint):
            remaining = deadline - time.monotonic()
            if remaining > 0:
                found = readiness.probe(channel, remaining, wait_for_ready=True)
    if found is readiness.Probe.READY:
        return
    if hint is None:
        hint = connectivity.diagnose(spec.target.uri, spec.target.tcp, plaintext=plaintext)
    message = f"cannot connect to {spec.target.uri}"
    if not connectivity.is_certain(hint):
        message += f" within {timeout}s"
    raise NotConnected(f"{message}: {hint}" if hint else message)


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
            problem = connectivity.unix_problem(spec.target.uri)
            if problem:  # certain before any attempt: no reason to wait --connect-timeout
                raise NotConnected(f"cannot connect to {spec.target.uri}: {problem}")
            channel = open_channel(spec)
            try:
                _wait_ready(channel, spec, a.connect_timeout, plaintext=bool(a.plaintext))
            except NotConnected:
                channel.close()
                raise
            self._channel = channel
        return self._channel

    def client(self) -> Client:
        return Client(self.channel(), timeout=self.args.max_time, metadata=self.metadata)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
