"""Run inside a private mount + network namespace (own /run/pcscd, own loopback) by
test_pcscd_stale.py: leave the files of a dead pcscd behind, show that pcscd itself
refuses to start, then run ``hwgate-testbed up`` and ``down``. Prints one JSON object.

Usage: python stale_pcscd_probe.py zombie|other DIR
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

RUN = Path("/run/pcscd")


def zombie() -> int:
    """A child that exits and is not reaped: kill(pid, 0) still succeeds, /proc says Z."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # wait for the exit, leave the zombie
    return pid


def leave_stale_files(pid: int) -> None:
    (RUN / "pcscd.pid").write_bytes(f"{pid}\n\0".encode())  # as pcscd writes it
    with socket.socket(socket.AF_UNIX) as sock:  # a socket file nobody listens on
        sock.bind(str(RUN / "pcscd.comm"))


def testbed(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "hwgate_testbed", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def main() -> None:
    kind, directory = sys.argv[1], sys.argv[2]
    other = None
    if kind == "zombie":
        pid = zombie()
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    else:  # a live process that is not pcscd took the pid
        other = subprocess.Popen(["sleep", "300"])
        pid, state = other.pid, "other"
    leave_stale_files(pid)
    bare = subprocess.run(["pcscd", "-f", "-i"], capture_output=True, text=True, timeout=30)
    up = testbed("up", "--dir", directory)
    status = testbed("status", "--json", "--dir", directory)
    down = testbed("down", "--dir", directory)
    if other is not None:
        other.kill()
        other.wait()
    else:
        os.waitpid(pid, 0)
    print(json.dumps({
        "state": state,
        "bare_rc": bare.returncode,
        "bare_out": bare.stdout + bare.stderr,
        "up_rc": up.returncode,
        "up_out": up.stdout + up.stderr,
        "status": json.loads(status.stdout) if status.returncode == 0 else status.stderr,
        "down_rc": down.returncode,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
