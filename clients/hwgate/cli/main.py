"""``hwgate``: the admin CLI. Parse arguments, make one library call, print.

The one place that turns exceptions into exit codes (see hwgate.cli.output):
0 ok, 1 usage or connection error, 64 + gRPC status code for a failed RPC.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc

from hwgate import errors
from hwgate.channel import DEFAULT_SOCKET, ENV_ADDR
from hwgate.cli import cards, completion, generic, hsm
from hwgate.cli.context import Context, NotConnected, parse_header
from hwgate.cli.output import EXIT_OK, EXIT_USAGE, fail, print_error, print_json, print_table
from hwgate.cli.reflection import SymbolNotFound

EPILOG = f"""\
target: unix:///path, host:port, or host:port,host:port (round_robin).
  Default: ${ENV_ADDR}, else unix://{DEFAULT_SOCKET}. TCP uses TLS (mTLS with --cert/--key)
  unless --plaintext.

exit codes:
  0        success
  1        usage error, bad input, or no connection within --connect-timeout
  64+CODE  the RPC failed with gRPC status CODE (e.g. 69 NOT_FOUND, 71 PERMISSION_DENIED,
           73 FAILED_PRECONDITION, 78 UNAVAILABLE); stderr shows code, message and the
           ErrorInfo reason and metadata (--json: as one JSON object)

examples:
  hwgate list
  hwgate call grpc.health.v1.Health/Check -d '{{}}'
  hwgate --addr localhost:7443 --cacert ca.pem --cert admin.pem --key admin.key readers
  hwgate --addr localhost:7443 --cacert ca.pem --cert enrollment.pem --key enrollment.key \\
    sign issuing-ca --alg ecdsa-sha256 --in tbs.der --out sig.der

Connection options go before COMMAND and keep grpcurl's names; no command reuses
them (the HSM key of sign, key pub, derive and keygen is the positional KEY).
Secrets (the PIN) are never arguments: a prompt without echo, --pin-stdin or --pin-file.
A missing Unix socket fails at once; TLS against a plaintext port (or --plaintext
against TLS) fails at the first attempt with a hint. Shell completion:
hwgate completion bash|zsh|tcsh (see hwgate completion --help). Version: --version.
"""


CONNECTION_OPTIONS = ("--addr", "--plaintext", "--cacert", "--cert", "--key", "--servername",
                      "-H", "--header", "--connect-timeout")  # fmt: skip
KEY_HINT = (
    "the HSM key is the positional KEY (hwgate sign KEY --alg ...; also key pub, derive, "
    "keygen); --key is the client's TLS key"
)


def usage_hint(message: str) -> str:
    """A hint for the classic slip: a connection option after the command (or the old
    ``sign --key REF`` form). Connection options go before the command, as in grpcurl."""
    if not message.startswith("unrecognized arguments:"):
        return ""
    words = message.split(":", 1)[1].split()
    if "--key" in words:
        return KEY_HINT
    if any(w.split("=")[0] in CONNECTION_OPTIONS for w in words):
        return "connection options go before the command: hwgate [--addr ...] COMMAND ..."
    return ""


class Parser(argparse.ArgumentParser):
    """Usage errors exit with 1, like every other non-RPC failure."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        hint = usage_hint(message)
        self.exit(
            EXIT_USAGE, f"{self.prog}: error: {message}\n" + (f"hint: {hint}\n" if hint else "")
        )


def _common() -> Parser:
    """Options every subcommand accepts after its name too (default SUPPRESS keeps globals)."""
    common = Parser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="JSON output (protobuf JSON mapping)")  # fmt: skip
    common.add_argument("--max-time", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                        help="deadline of each call; for watch, how long to watch")  # fmt: skip
    return common


def version_text() -> str:
    """``hwgate X.Y.Z (API hwgate.v1)``: the installed distribution's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("hwgate")
    except PackageNotFoundError:  # run from a source tree without an install
        number = "unknown"
    return f"hwgate {number} (API hwgate.v1)"


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                found += _subparsers(child)
    return found


def add_version_everywhere(parser: argparse.ArgumentParser) -> None:
    """``--version`` on the top level and after every (sub)command's name."""
    text = version_text()
    for p in _subparsers(parser):
        if "--version" not in p._option_string_actions:
            p.add_argument("--version", action="version", version=text)


def cmd_health(ctx: Context) -> int:
    client = ctx.client()
    services = ctx.args.service or ["", "hwgate.v1.CardService", "hwgate.v1.PivService",
                                    "hwgate.v1.HsmService"]  # fmt: skip
    status = {name: client.health(name) for name in services}
    if ctx.json:
        print_json(status)
    else:
        print_table(["SERVICE", "STATUS"], [(n or "(server)", s) for n, s in status.items()])
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hwgate",
        description="Admin CLI for hwgated (grpcurl-style, by server reflection) "
        "with friendly verbs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = parser.add_argument_group("connection")
    g.add_argument("--addr", metavar="TARGET", help=f"default ${ENV_ADDR} or the local socket")
    g.add_argument("--plaintext", action="store_true", help="TCP without TLS (loopback tests)")
    g.add_argument("--cacert", metavar="FILE", help="CA certificate(s) to verify the server")
    g.add_argument("--cert", metavar="FILE", help="client certificate (PEM)")
    g.add_argument("--key", metavar="FILE", help="client private key (PEM)")
    g.add_argument("--servername", metavar="NAME", help="name to check the server cert against")
    g.add_argument("-H", "--header", action="append", type=parse_header, metavar="'K: V'",
                   help="request metadata, repeatable")  # fmt: skip
    g.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument("--json", action="store_true", help="JSON output")
    parser.add_argument("--max-time", type=float, metavar="SECONDS", help="deadline per call")
    common = _common()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    generic.add_parsers(sub, common)
    cards.add_parsers(sub, common)
    hsm.add_parsers(sub, common)
    p = sub.add_parser(
        "health", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="grpc.health.v1 status", description="Health of the server and each service.",
        epilog="example:\n  hwgate health hwgate.v1.HsmService --json",
    )  # fmt: skip
    p.add_argument("service", nargs="*", help='services to check ("" = the server)')
    p.set_defaults(func=cmd_health)
    completion.add_parser(sub, parser)
    add_version_everywhere(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    ctx = Context(args)
    try:
        return int(args.func(ctx))
    except errors.HwgateError as exc:
        return print_error(exc, ctx.json)
    except grpc.RpcError as err:  # generic calls and reflection go through raw grpc
        return print_error(errors.from_rpc_error(err), ctx.json)
    except (NotConnected, SymbolNotFound, OSError, ValueError) as exc:
        return fail(str(exc))
    finally:
        ctx.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hwgate`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
