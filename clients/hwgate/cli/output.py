"""How the CLI prints: proto JSON, tables, errors, exit codes.

Exit codes (grpcurl's convention): 0 success; 1 usage error or no connection;
64 + the gRPC status code when an RPC fails (e.g. 69 NOT_FOUND, 71
PERMISSION_DENIED, 73 FAILED_PRECONDITION, 78 UNAVAILABLE).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from hwgate.errors import DOMAIN, HwgateError

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_RPC_BASE = 64


def rpc_exit_code(code: grpc.StatusCode) -> int:
    return EXIT_RPC_BASE + int(code.value[0])


def to_dict(message: Message, defaults: bool = True) -> dict[str, Any]:
    """The proto3 JSON mapping (camelCase names, enums by name, bytes base64)."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=defaults)


def print_json(value: Any, out: TextIO | None = None, *, pretty: bool = True) -> None:
    out = out or sys.stdout
    if isinstance(value, Message):
        value = to_dict(value)
    if pretty:
        out.write(json.dumps(value, indent=2) + "\n")
    else:
        out.write(json.dumps(value, separators=(",", ":")) + "\n")
    out.flush()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned table (no borders), as `ip`/`kubectl` print."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        sys.stdout.write("\n")
    sys.stdout.flush()


def print_error(exc: HwgateError, as_json: bool) -> int:
    """Print an RPC failure (code, message, ErrorInfo) to stderr; its exit code."""
    if as_json:
        print_json(
            {
                "code": exc.code.name,
                "message": exc.message,
                "reason": exc.reason,
                "domain": DOMAIN if exc.reason else "",
                "metadata": exc.metadata,
            },
            sys.stderr,
        )
    else:
        lines = ["ERROR:", f"  Code: {exc.code.name}", f"  Message: {exc.message}"]
        if exc.reason:
            lines.append(f"  Reason: {exc.reason} ({DOMAIN})")
        for key, value in sorted(exc.metadata.items()):
            lines.append(f"  {key}: {value}")
        sys.stderr.write("\n".join(lines) + "\n")
    return rpc_exit_code(exc.code)


def fail(message: str) -> int:
    sys.stderr.write(f"hwgate: {message}\n")
    return EXIT_USAGE
