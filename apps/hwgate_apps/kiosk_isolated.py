"""``make kiosk`` as root: the kiosk stack in a private namespace, its page on the host.

Like ``make demo``, the stack runs under ``testbed/isolated`` (its own mount and
network namespace: a private pcscd, private vpcd ports and 127.0.0.1:7443), so it
never shares readers or ports with ``make run`` or the host. A person's browser
lives in the host's namespace, though: this launcher binds the kiosk's listening
socket here first and passes it down as an inherited file descriptor (a socket
stays in the namespace it was made in), so http://127.0.0.1:8080 works from the
host while everything else stays private. The stack prints the ``nsenter``
commands that insert and remove cards inside the namespace.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hwgate_apps import web

ISOLATED = Path(__file__).resolve().parents[2] / "testbed" / "isolated"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hwgate-kiosk-isolated", description=__doc__)
    parser.add_argument("--dir", required=True, help="test bed directory (inside the namespace)")
    parser.add_argument("--port", type=int, default=8080, help="kiosk page port on the host")
    parser.add_argument("--isolated", default=str(ISOLATED), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        listener = web.bind("127.0.0.1", args.port)
    except OSError as exc:
        print(f"hwgate-kiosk: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 1
    listener.set_inheritable(True)
    fd = listener.fileno()
    command = [args.isolated, sys.executable, "-m", "hwgate_apps.demo", "--interactive",
               "--dir", args.dir, "--kiosk-fd", str(fd), "--private-namespace"]  # fmt: skip
    os.execv(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
