"""``hwgate card change-pin`` and ``hwgate card unblock-pin``: two secrets per call.

The secrets come from the terminal without echo (the new PIN asked twice), or,
for scripts, from stdin with ``--pin-stdin``: one secret per line, in a fixed
order that ``--help`` states (change-pin: current PIN, then new PIN;
unblock-pin: PUK, then new PIN). Never from argv. Every buffer is a bytearray,
wiped when the call is done, success or not.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from hwgate.cli.context import Context
from hwgate.cli.output import EXIT_OK, print_json
from hwgate.cli.secret_input import SecretInputError, has_terminal

FMT = argparse.RawDescriptionHelpFormatter


def _wipe(*buffers: bytearray) -> None:
    for buf in buffers:
        buf[:] = bytes(len(buf))


def _line(raw: bytearray) -> bytearray:
    """*raw* without its line ending, in place (what is cut off is zeroed first)."""
    end = len(raw)
    while end and raw[end - 1 : end] in (b"\n", b"\r"):
        end -= 1
    raw[end:] = bytes(len(raw) - end)
    del raw[end:]
    return raw


def _from_stdin(names: Sequence[str]) -> list[bytearray]:
    """One line per secret from stdin, in *names*' order."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        raise SecretInputError("--pin-stdin: stdin is closed")
    values: list[bytearray] = []
    try:
        for number, name in enumerate(names, 1):
            try:
                raw = bytearray(stream.readline())
            except (OSError, ValueError) as exc:
                raise SecretInputError(f"--pin-stdin: cannot read stdin: {exc}") from None
            value = _line(raw)
            if not value:
                raise SecretInputError(f"--pin-stdin: line {number} ({name}) is missing or empty")
            values.append(value)
    except BaseException:
        _wipe(*values)
        raise
    return values


def _ask(prompt: str) -> bytearray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", getpass.GetPassWarning)
        try:
            value = bytearray(getpass.getpass(f"{prompt}: ").encode("utf-8"))
        except EOFError:
            raise SecretInputError(f"no {prompt} entered (end of input)") from None
    if not value:
        raise SecretInputError(f"empty {prompt}")
    return value


def _from_terminal(names: Sequence[str]) -> list[bytearray]:
    """Each secret without echo; the last (the new PIN) twice, which must agree."""
    if not has_terminal():
        raise SecretInputError("no terminal to ask for the secrets; use --pin-stdin (see --help)")
    values: list[bytearray] = []
    try:
        for name in names:
            values.append(_ask(name))
        again = _ask(f"{names[-1]} again")
        same = again == values[-1]
        _wipe(again)
        if not same:
            raise SecretInputError(f"the two {names[-1]} entries differ")
    except BaseException:
        _wipe(*values)
        raise
    return values


@contextmanager
def secrets(names: Sequence[str], stdin: bool) -> Iterator[list[bytearray]]:
    """The secrets *names*, wiped when the block ends."""
    values = _from_stdin(names) if stdin else _from_terminal(names)
    try:
        yield values
    finally:
        _wipe(*values)


def _done(ctx: Context, what: str, message: str) -> int:
    if ctx.json:
        print_json({"reader": ctx.args.reader, what: True})
    else:
        sys.stdout.write(f"{message} on {ctx.args.reader}\n")
    return EXIT_OK


def cmd_change_pin(ctx: Context) -> int:
    a = ctx.args
    with (
        secrets(("current PIN", "new PIN"), a.pin_stdin) as (old, new),
        ctx.client().card_session(a.reader) as session,
    ):
        session.change_pin(old, new, allow_last_attempt=a.allow_last_attempt)
    return _done(ctx, "changed", "PIN changed")


def cmd_unblock_pin(ctx: Context) -> int:
    a = ctx.args
    with (
        secrets(("PUK", "new PIN"), a.pin_stdin) as (puk, new),
        ctx.client().card_session(a.reader) as session,
    ):
        session.unblock_pin(puk, new, allow_last_puk_attempt=a.allow_last_puk_attempt)
    return _done(ctx, "unblocked", "PIN unblocked and set")


def _parser(
    card: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    name: str,
    func: Callable[[Context], int],
    *,
    help: str,
    description: str,
    epilog: str,
) -> argparse.ArgumentParser:
    p = card.add_parser(
        name,
        parents=[common],
        formatter_class=FMT,
        help=help,
        description=description,
        epilog=epilog,
    )
    p.add_argument("--reader", required=True)
    p.add_argument(
        "--pin-stdin", action="store_true", help="read the secrets from stdin, one per line"
    )
    p.set_defaults(func=func)
    return p


def add_parsers(card: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = _parser(
        card, common, "change-pin", cmd_change_pin, help="change the PIV PIN",
        description="Change the PIV PIN (CHANGE REFERENCE DATA) in a session closed right after;\n"
        "the PIN is not left verified. Without --pin-stdin: asks for the current PIN\n"
        "and the new PIN (twice) on the terminal, without echo.\n"
        "--pin-stdin (scripts): exactly two lines on stdin, no prompt:\n"
        "  line 1: the current PIN\n"
        "  line 2: the new PIN (6 to 8 digits)\n"
        "Never on the command line.",
        epilog="example:\n  printf '%s\\n%s\\n' \"$OLD\" \"$NEW\" | \\\n"
        "    hwgate card change-pin --reader 'Virtual PCD 00 00' --pin-stdin",
    )  # fmt: skip
    p.add_argument("--allow-last-attempt", action="store_true", help="spend a last PIN retry")

    p = _parser(
        card, common, "unblock-pin", cmd_unblock_pin, help="set a new PIN with the PUK",
        description="Unblock the PIV PIN with the PUK (RESET RETRY COUNTER) and set a new PIN,\n"
        "in a session closed right after. Without --pin-stdin: asks for the PUK and\n"
        "the new PIN (twice) on the terminal, without echo.\n"
        "--pin-stdin (scripts): exactly two lines on stdin, no prompt:\n"
        "  line 1: the PUK (its 8 characters)\n"
        "  line 2: the new PIN (6 to 8 digits)\n"
        "Never on the command line. The daemon refuses to spend a last PUK retry the\n"
        "card has reported unless --allow-last-puk-attempt is given.",
        epilog="example:\n  printf '%s\\n%s\\n' \"$PUK\" \"$NEW\" | \\\n"
        "    hwgate card unblock-pin --reader 'Virtual PCD 00 00' --pin-stdin",
    )  # fmt: skip
    p.add_argument(
        "--allow-last-puk-attempt", action="store_true", help="spend a last known PUK retry"
    )
