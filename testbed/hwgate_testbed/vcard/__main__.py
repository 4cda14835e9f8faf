"""Serve one virtual PIV card to vpcd: ``python -m hwgate_testbed.vcard --card-dir DIR``.

Starting this process inserts the card into the vpcd reader at ``--host``/
``--port`` (default 127.0.0.1:35963, "Virtual PCD 00 00"); stopping it (SIGTERM
or SIGINT) removes the card. The card's mutable state - PIN and PUK retry
counters, a changed PIN, the security status - lives only in this process's
memory, exactly as long as the card is "in the reader": a fresh process is a
fresh insert and starts from the profile saved in DIR (which is never written).

Exit status: 0 after a stop signal or when vpcd closes the connection, 1 if the
profile cannot be loaded, 2 if vpcd cannot be reached within --connect-timeout.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .applet import PivApplet
from .atr import atr_for
from .profile import CardProfile
from .quirk_material import MaterialMissing, with_material
from .quirks import PROFILES, STANDARD, quirk_profile
from .vpcd import DEFAULT_HOST, DEFAULT_PORT, run_card

log = logging.getLogger("hwgate_testbed.vcard")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hwgate_testbed.vcard", description=__doc__)
    parser.add_argument("--card-dir", type=Path, required=True, help="provisioned card profile")
    parser.add_argument("--host", default=DEFAULT_HOST, help="vpcd host (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="vpcd port")
    parser.add_argument("--connect-timeout", type=float, default=10.0, help="seconds")
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=STANDARD.name,
        help="quirk profile for this insertion (default %(default)s; see vcard/quirks.py)",
    )
    parser.add_argument("--debug", action="store_true", help="log APDUs (PINs redacted)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s vcard[%(process)d] %(levelname)s %(message)s",
    )
    quirks = quirk_profile(args.profile)
    try:
        profile = with_material(CardProfile.load(args.card_dir), args.card_dir, quirks)
    except (OSError, ValueError, KeyError, MaterialMissing) as exc:
        log.error("cannot load card profile from %s: %s", args.card_dir, exc)
        return 1
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    log.info(
        "inserting card %r (%s, profile %s) at %s:%d",
        profile.name,
        profile.key_type,
        args.profile,
        args.host,
        args.port,
    )
    applet = PivApplet(profile, quirks)
    atr = atr_for(quirks.t0_only)
    if not run_card(applet, atr, stop, args.host, args.port, args.connect_timeout):
        return 0 if stop.is_set() else 2
    log.info("card %r removed", profile.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
