"""`hwgate-testbed up|down|insert|remove|revoke|status|run`: parse, one library call, print.

Errors from the layers below are turned into a one-line message and exit
status 1 here and only here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from hwgate_testbed import cards, envfile, orchestrate, rundaemon, tpm2token
from hwgate_testbed.cards import CardError
from hwgate_testbed.paths import DEFAULT_DIR, PIV_PIN, PIV_PUK, TestbedPaths
from hwgate_testbed.pcscd import PcscError
from hwgate_testbed.slots import SlotBusy
from hwgate_testbed.softhsm import TokenError

_FAILURES = (
    orchestrate.TestbedError,
    PcscError,
    TokenError,
    CardError,
    SlotBusy,
    rundaemon.DaemonNotFound,
    OSError,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwgate-testbed",
        description="Real PC/SC + PKCS#11 stack without hardware: pcscd/vpcd, a virtual "
        "PIV card, a SoftHSM2 token, a test PKI and a daemon config.",
    )
    sub = parser.add_subparsers(dest="verb", required=True)

    def verb(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--dir", default=str(DEFAULT_DIR), help="test bed directory (%(default)s)")
        return p

    up = verb("up", "start pcscd if needed, provision token/cards/PKI, insert alice in slot 0")
    up.add_argument("--no-insert", action="store_true", help="leave every slot empty")
    up.add_argument("--tpm2", action="store_true",
                    help="also start the tpm2-pkcs11 token (swtpm, tpm2-abrmd)")  # fmt: skip
    ins = verb("insert", "insert a card (provisioned on first use) into a slot")
    ins.add_argument("--slot", type=int, default=0)
    ins.add_argument("--card", default="alice")
    ins.add_argument("--profile", default=None,
                     help="quirk profile for this insertion, e.g. zero-fascn")  # fmt: skip
    ins.add_argument("--key-type", choices=("rsa", "ecc"), default=None,
                     help="for a new card (default ecc; bob is rsa)")  # fmt: skip
    rm = verb("remove", "remove the card from a slot")
    rm.add_argument("--slot", type=int, default=0)
    rv = verb("revoke", "put a card's certificates on the PIV test CA's CRL (DIR/pki/piv-ca.crl)")
    rv.add_argument("--card", required=True)
    rv.add_argument("--reason", default="key_compromise",
                    help="x509 CRLReason, e.g. key_compromise, affiliation_changed")  # fmt: skip
    rv.add_argument("--undo", action="store_true", help="take the card off the CRL again")
    st = verb("status", "readers, cards, token and processes of this test bed")
    st.add_argument("--json", action="store_true")
    verb("down", "stop the card processes and the pcscd that up started; keep files")
    run = verb("run", "up (if needed), then exec hwgated --config DIR/hwgated.toml (foreground)")
    run.add_argument("--no-insert", action="store_true", help="leave every slot empty")
    run.add_argument("--log-level", help="passed to hwgated (overrides the config)")
    return parser


def _print_up(result: orchestrate.UpResult) -> None:
    paths = result.paths
    print(envfile.render(paths), end="")
    print()
    pc = result.pcscd
    print(f"# test bed in {paths.root}")
    print(f"#   pcscd:   {f'started, pid {pc.pid}' if pc.started_here else 'already running'}")
    if pc.stale_cleared:
        print(f"#            {pc.stale_cleared}")
    print(f"#   token:   {result.token.label} ({len(result.token.keys)} keys) in {paths.tokens}")
    print(f"#   cards:   {', '.join(result.cards)} (PIN {PIV_PIN}, PUK {PIV_PUK})")
    card = result.inserted
    print(f"#   slot 0:  {f'{card.name} (pid {card.pid})' if card else 'empty'}")
    print(f"#   PKI:     {paths.pki}")
    print(f"#   escrow:  {paths.escrow}/<card GUID>.json (9D keys wrapped under escrow-kek)")
    print(f"#   daemon:  hwgated --config {paths.daemon_config}")
    for note in result.notes:
        print(f"#   note:    {note}")


def _print_tpm2(token: tpm2token.Tpm2Token) -> None:
    """The second token: what a [[hsm.token]] table needs (env = the variables shown)."""
    print(f"#   tpm2:    token {token.label}, module {token.module}, PIN in {token.user_pin_file}")
    for name, value in token.env.items():
        print(f"#            {name}={value}")


def _print_status(st: dict[str, Any]) -> None:
    pc = st["pcscd"]
    where = f"started here, pid {pc['pid']}" if pc["started_here"] else "not started here"
    print(f"test bed {st['dir']}")
    print(f"pcscd: {'running' if pc['running'] else 'not answering'} ({where})")
    for r in st["readers"]:
        print(f"  reader {r['name']!r}: {'card ' + r['atr'] if r['present'] else 'empty'}")
    for s in st["slots"]:
        card = f"{s['card']} (pid {s['pid']})" if s["card"] else "-"
        print(f"  slot {s['slot']} port {s['port']}: card {card}")
    tok = st["token"]
    print(f"token {tok['label']}: {', '.join(tok['keys']) or tok.get('error', 'not provisioned')}")
    print(f"cards: {', '.join(st['cards']) or '-'}  PIN {st['piv']['pin']} PUK {st['piv']['puk']}")
    for p in st["processes"]:
        print(f"process {p['pid']}: {p['what']}")


def _run(args: argparse.Namespace) -> int:
    paths = TestbedPaths.at(args.dir)
    if args.verb == "up":
        _print_up(orchestrate.up(paths, insert_card=not args.no_insert))
        if args.tpm2:
            _print_tpm2(orchestrate.tpm2_up(paths))
    elif args.verb == "insert":
        card = orchestrate.insert(paths, args.slot, args.card, args.key_type, args.profile)
        print(f"inserted {card.name} into slot {card.slot} ({card.reader}), pid {card.pid}")
    elif args.verb == "remove":
        gone = orchestrate.remove(paths, args.slot)
        print(f"removed {gone.name} from slot {gone.slot}" if gone else f"slot {args.slot}: empty")
    elif args.verb == "revoke":
        crl = cards.revoke_card(paths, args.card, args.reason, undo=args.undo)
        what = "taken off" if args.undo else f"put on ({args.reason})"
        print(f"card {args.card}: certificates {what} the CRL {crl}")
    elif args.verb == "status":
        st = orchestrate.status(paths)
        print(json.dumps(st, indent=2)) if args.json else _print_status(st)
    elif args.verb == "run":
        argv = rundaemon.daemon_argv(paths, args.log_level)  # fail before touching the bed
        _print_up(orchestrate.up(paths, insert_card=not args.no_insert))
        print(f"# exec {' '.join(argv)}")
        rundaemon.exec_daemon(argv)
    elif args.verb == "down":
        done = orchestrate.down(paths)
        for c in done["removed"]:
            print(f"removed {c['card']} from slot {c['slot']}")
        if done["tpm2_stopped"]:
            print(f"stopped {', '.join(done['tpm2_stopped'])}")
        print("stopped pcscd" if done["pcscd_stopped"] else "pcscd: not started here, left running")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hwgate-testbed` console script."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except _FAILURES as exc:
        print(f"hwgate-testbed {args.verb}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
