"""``list``, ``describe`` and ``call``: grpcurl's verbs, over server reflection."""

from __future__ import annotations

import argparse
import sys

from google.protobuf import json_format

from hwgate.cli import describe as render
from hwgate.cli.context import Context
from hwgate.cli.output import EXIT_OK, fail, print_json, to_dict
from hwgate.cli.reflection import Reflection, invoke, parse_requests


def cmd_list(ctx: Context) -> int:
    reflection = Reflection(ctx.channel())
    if ctx.args.service:
        service = reflection.service(ctx.args.service)
        names = [m.full_name for m in service.methods]
    else:
        names = reflection.services()
    if ctx.json:
        print_json(names)
    else:
        sys.stdout.write("".join(f"{n}\n" for n in names))
    return EXIT_OK


def cmd_describe(ctx: Context) -> int:
    reflection = Reflection(ctx.channel())
    symbols = [ctx.args.symbol] if ctx.args.symbol else reflection.services()
    for name in symbols:
        symbol = reflection.symbol(name)
        kind, text = render.render(symbol)
        if ctx.json:
            print_json({"symbol": symbol.full_name, "kind": kind.split()[-1], "proto": text})
        else:
            sys.stdout.write(f"{symbol.full_name} is {kind}:\n{text}\n")
    return EXIT_OK


def _read_data(spec: str | None) -> str:
    """-d JSON, -d @file, -d @- (stdin)."""
    if spec is None:
        return ""
    if spec == "@-":
        return sys.stdin.read()
    if spec.startswith("@"):
        with open(spec[1:], encoding="utf-8") as f:
            return f.read()
    return spec


def cmd_call(ctx: Context) -> int:
    a = ctx.args
    reflection = Reflection(ctx.channel())
    method = reflection.method(a.method)
    try:
        requests = parse_requests(_read_data(a.data), reflection.message_class(method.input_type))
    except (ValueError, json_format.ParseError) as exc:
        return fail(f"bad request data: {exc}")
    responses, call = invoke(
        reflection, method, requests, metadata=ctx.metadata, timeout=a.max_time
    )
    stream = method.server_streaming
    for count, response in enumerate(responses, 1):
        body = to_dict(response, defaults=a.emit_defaults)
        print_json(body, pretty=not stream)
        if a.count is not None and count >= a.count:
            call.cancel()
            break
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "list", parents=[common], formatter_class=fmt, help="services or a service's methods",
        description="List the server's services (by reflection), or the methods of SERVICE.",
        epilog="example:\n  hwgate list hwgate.v1.CardService",
    )  # fmt: skip
    p.add_argument("service", nargs="?")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser(
        "describe", parents=[common], formatter_class=fmt, help="show a symbol's definition",
        description="Describe a service, method, message, enum or field (by reflection).",
        epilog="example:\n  hwgate describe hwgate.v1.WatchEventsRequest",
    )  # fmt: skip
    p.add_argument("symbol", nargs="?")
    p.set_defaults(func=cmd_describe)
    p = sub.add_parser(
        "call", parents=[common], formatter_class=fmt, help="call any method with JSON",
        description="Call SERVICE/METHOD with JSON request data (protobuf JSON mapping).\n"
        "Server streams print one JSON object per line. Client streams take several\n"
        "JSON objects in the data, one after another.",
        epilog="examples:\n  hwgate call grpc.health.v1.Health/Check -d '{}'\n"
        "  hwgate call hwgate.v1.CardService/WatchEvents --count 3\n"
        "  echo '{\"labelPattern\": \"signer-*\"}' |\n"
        "    hwgate call hwgate.v1.HsmService/ListKeys -d @-",
    )  # fmt: skip
    p.add_argument("method", metavar="SERVICE/METHOD")
    p.add_argument("-d", "--data", metavar="JSON|@FILE|@-", help="request JSON (default {})")
    p.add_argument("--count", type=int, help="stop after N responses (streams)")
    p.add_argument("--emit-defaults", action="store_true", help="print fields at default values")
    p.set_defaults(func=cmd_call)
