"""Friendly card verbs: ``readers``, ``watch``, ``card info``, ``card verify-pin``
(``card change-pin`` / ``unblock-pin``: :mod:`hwgate.cli.pin_admin`)."""

from __future__ import annotations

import argparse
import sys
import threading
from datetime import datetime

from hwgate.certfmt import serial_hex
from hwgate.cli import pin_admin
from hwgate.cli.context import Context
from hwgate.cli.output import EXIT_OK, fail, print_json, print_table, to_dict
from hwgate.cli.secret_input import read_secret
from hwgate.v1 import card_pb2, piv_pb2

FMT = argparse.RawDescriptionHelpFormatter


def _state(value: int) -> str:
    return card_pb2.ReaderState.Name(value).removeprefix("READER_STATE_").lower()


def cmd_readers(ctx: Context) -> int:
    readers = ctx.client().list_readers()
    if ctx.json:
        print_json(to_dict(card_pb2.ListReadersResponse(readers=readers)))
        return EXIT_OK
    rows = [
        (
            r.name,
            _state(r.state),
            r.card.piv_auth_certificate.subject if r.HasField("card") else "",
            "held" if r.session_held else "",
        )
        for r in readers
    ]
    print_table(["READER", "STATE", "CARD", "SESSION"], rows)
    return EXIT_OK


def _date(chuid: piv_pb2.Chuid) -> str:
    """The CHUID expiration date as YYYY-MM-DD, or "" when the card states none."""
    if not chuid.HasField("expiration_date"):
        return ""
    d = chuid.expiration_date
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def _event_line(event: card_pb2.WatchEventsResponse) -> str:
    when = datetime.fromtimestamp(event.event_time.ToSeconds()).strftime("%H:%M:%S")
    kind = card_pb2.EventType.Name(event.type).removeprefix("EVENT_TYPE_")
    extra = event.card.piv_auth_certificate.subject if event.HasField("card") else ""
    flags = " resync" if event.resync else ""
    return f"{event.sequence} {when} {kind}{flags} {event.reader} {_state(event.state)} {extra}"


def cmd_watch(ctx: Context) -> int:
    a = ctx.args
    stream = ctx.client().watch_events(a.reader or (), after_sequence=a.after)
    timer = None
    if a.max_time:
        timer = threading.Timer(a.max_time, stream.cancel)
        timer.daemon = True
        timer.start()
    count = 0
    try:
        for event in stream:
            if ctx.json:
                print_json(to_dict(event), pretty=False)
            else:
                sys.stdout.write(_event_line(event).rstrip() + "\n")
                sys.stdout.flush()
            count += 1
            if a.count is not None and count >= a.count:
                break
    finally:
        stream.cancel()
        if timer is not None:
            timer.cancel()
    return EXIT_OK


def _pick_reader(ctx: Context) -> str | None:
    """--reader, or the only reader holding a card."""
    if ctx.args.reader:
        return str(ctx.args.reader)
    present = [
        r.name for r in ctx.client().list_readers() if r.state == card_pb2.READER_STATE_PRESENT
    ]
    return present[0] if len(present) == 1 else None


def cmd_card_info(ctx: Context) -> int:
    reader = _pick_reader(ctx)
    if reader is None:
        return fail("no single reader with a card; name one with --reader")
    info = ctx.client().get_card_info(reader)
    if ctx.json:
        print_json(to_dict(info))
        return EXIT_OK
    rows: list[tuple[str, object]] = [
        ("reader", info.reader),
        ("atr", info.atr.hex()),
        ("guid", info.chuid.guid),
        ("expiry", _date(info.chuid)),
        # absent: no CHUID, or a FASC-N that fails its check (e.g. an all-zero placeholder)
        ("fasc-n", info.chuid.fascn.raw.hex() if info.chuid.HasField("fascn") else "-"),
        ("pin retries", info.pin_retries_left if info.HasField("pin_retries_left") else "-"),
    ]
    for cert in info.certificates:
        rows.append((f"cert {cert.slot}", cert.summary.subject))
        rows.append((f"cert {cert.slot} serial", serial_hex(cert.summary.serial_number)))
    print_table(["FIELD", "VALUE"], rows)
    return EXIT_OK


def cmd_verify_pin(ctx: Context) -> int:
    a = ctx.args
    pin = read_secret("PIN", file=a.pin_file, stdin=a.pin_stdin)
    client = ctx.client()
    try:
        with client.card_session(a.reader) as session:
            session.verify_pin(pin, allow_last_attempt=a.allow_last_attempt)
    finally:
        pin[:] = bytes(len(pin))  # wipe
    if ctx.json:
        print_json({"reader": a.reader, "verified": True})
    else:
        sys.stdout.write(f"PIN verified on {a.reader}\n")
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "readers", parents=[common], formatter_class=FMT, help="list readers and cards",
        description="List the readers the daemon owns, their state and card.",
        epilog="example:\n  hwgate readers --json",
    )  # fmt: skip
    p.set_defaults(func=cmd_readers)

    p = sub.add_parser(
        "watch", parents=[common], formatter_class=FMT, help="stream reader and card events",
        description="Stream events: a snapshot first, then live events. Resumes by itself\n"
        "after a dropped connection or a daemon restart (a resync snapshot marks missed events).",
        epilog="example:\n  hwgate watch --reader 'Virtual PCD*' --json --count 5",
    )  # fmt: skip
    p.add_argument("--reader", action="append", metavar="PATTERN", help="fnmatch pattern")
    p.add_argument("--after", type=int, default=0, metavar="SEQ", help="resume after SEQ")
    p.add_argument("--count", type=int, help="stop after N events")
    p.set_defaults(func=cmd_watch, watch_max_time=True)

    card = sub.add_parser("card", help="PIV card operations").add_subparsers(
        dest="card_command", metavar="{info,verify-pin,change-pin,unblock-pin}", required=True
    )
    p = card.add_parser(
        "info", parents=[common], formatter_class=FMT, help="CHUID, certificates, PIN retries",
        description="Show a PIV card's CHUID, certificates and PIN retries (GetCardInfo).",
        epilog="example:\n  hwgate card info --reader 'Virtual PCD 00 00' --json",
    )  # fmt: skip
    p.add_argument("--reader", help="reader name (default: the only one with a card)")
    p.set_defaults(func=cmd_card_info)

    p = card.add_parser(
        "verify-pin", parents=[common], formatter_class=FMT, help="check the PIV PIN",
        description="Verify the PIV PIN in a session that is closed right after. The PIN is\n"
        "read from the terminal without echo, or --pin-file / --pin-stdin; never argv.\n"
        "Without a terminal (scripts) use --pin-stdin: one line, no prompt.",
        epilog="example:\n  hwgate card verify-pin --reader 'Virtual PCD 00 00' --pin-stdin < pin",
    )  # fmt: skip
    p.add_argument("--reader", required=True)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pin-file", metavar="FILE", help="read the PIN from FILE's first line")
    src.add_argument("--pin-stdin", action="store_true", help="read one line from stdin")
    p.add_argument("--allow-last-attempt", action="store_true")
    p.set_defaults(func=cmd_verify_pin)

    pin_admin.add_parsers(card, common)
