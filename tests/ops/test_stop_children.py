"""SIGTERM leaves no process of the daemon behind: systemd (KillMode=mixed)
SIGKILLs whatever is still in the unit's cgroup once the daemon has exited, and
it found multiprocessing's resource tracker there at every stop.

Whether a child outlived the daemon is a race when watched from outside, so the
test makes itself a child subreaper (what systemd is for its services): a child
the daemon did not wait for before exiting becomes the test's own, which
``waitpid`` tells without a race.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opsbed import OpsDaemon

from hwgate_testbed.paths import SOFTHSM_MODULE, TOKEN_LABEL


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def subreaper() -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _adopted(pid: int) -> bool:
    """True when *pid* became our child (its parent exited without waiting for it);
    reaps it then."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    return True


def test_sigterm_leaves_no_child_running(
    start_ops_daemon: Callable[..., OpsDaemon], testbed: object, subreaper: None
) -> None:
    paths = testbed.paths  # type: ignore[attr-defined]
    token = (
        f'[[hsm.token]]\nname = "testbed"\nmodule = "{SOFTHSM_MODULE}"\n'
        f'token_label = "{TOKEN_LABEL}"\npin_file = "{paths.user_pin}"\nworkers = 2\n'
        f"env = {{ SOFTHSM2_CONF = {json.dumps(str(paths.softhsm_conf))} }}\n"
    )
    daemon = start_ops_daemon(watchdog_usec=None, extra=token)
    daemon.notify.wait_for(lambda got: got.endswith("hsm testbed READY"), 30)
    children = _children(daemon.proc.pid)
    # Two HSM workers and multiprocessing's resource tracker.
    assert len(children) >= 3, children
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    # The daemon waited for everything it started before it exited: nothing was
    # left for the subreaper (systemd would have SIGKILLed it).
    left = [pid for pid in children if _adopted(pid)]
    assert not left, f"outlived the daemon: {left}"
