"""Detached helper processes: start, identify, wait for exit, stop.

The test bed's processes (pcscd, virtual cards) must outlive the CLI call that
started them, so they run in their own session and are tracked by pid files.
A pid alone can be reused by an unrelated process, so every check also matches
the process's command line against a marker before trusting or signalling it.
Exits are awaited through a pidfd (an event with a timeout), never by sleeping.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# Popen objects of children started by this process: kept so they can be
# reaped (no zombies in a long-lived parent such as a pytest session).
_children: dict[int, subprocess.Popen[bytes]] = {}
_argv: dict[int, list[str]] = {}  # what each of them was started as
# and a pidfd of each: it names that one process, and reads as exited once it has,
# even when something else reaped it and the pid went on to another process.
_pidfds: dict[int, int] = {}


def spawn_detached(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> int:
    """Start `argv` in a new session with output appended to `log`; return its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=dict(env) if env is not None else None,
        )
    _children[proc.pid] = proc
    _argv[proc.pid] = list(argv)
    _pidfds[proc.pid] = os.pidfd_open(proc.pid)  # ours and unreaped: still this process
    return proc.pid


def state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, Z for a zombie, ...), None if no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # field 3, after the parenthesised command name (which may itself hold ")")
    fields = stat.rpartition(")")[2].split()
    return fields[0] if fields else None


def is_zombie(pid: int) -> bool:
    """True for a process that exited and was not reaped (its pid still answers kill(0))."""
    return state(pid) in ("Z", "X")


def cmdline(pid: int) -> list[str] | None:
    """Arguments of a live (non-zombie) process, or None if it is gone."""
    if state(pid) in (None, "Z", "X"):
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def forget(pid: int) -> None:
    """Drop a child of ours from the registry (it exited and was reaped)."""
    _children.pop(pid, None)
    _argv.pop(pid, None)
    fd = _pidfds.pop(pid, None)
    if fd is not None:
        os.close(fd)


def _exited(pid: int) -> bool:
    """True if the child of ours registered as `pid` has exited (reaped or not)."""
    fd = _pidfds.get(pid)
    if fd is None:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def is_running(pid: int, marker: Sequence[str]) -> bool:
    """True if `pid` is alive and each string of `marker` is one of its arguments
    (the program counts by its base name, so "pcscd" matches "/usr/sbin/pcscd").

    A child started here is judged by its Popen: between fork and exec its
    /proc cmdline is still this process's, and a busy machine can stretch that
    moment long enough for a fresh card process to pass for a dead one (the card
    was then started a second time and the first one leaked into later tests)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        # Ours, exited (poll reaped it): the pid is free for the kernel to hand out
        # again (pid_max is 32768 here, and a suite run starts thousands of
        # processes), so from now on /proc says whose it is.
        forget(pid)
        child = None
    if child is not None and _exited(pid):
        # Ours once, but reaped behind its Popen's back (a test's own os.waitpid after
        # a SIGKILL), and the pid may be another child's since: its poll() would ask
        # the kernel about that one, and the dead one's argv would judge it.
        forget(pid)
        child = None
    args = _argv.get(pid) if child is not None else cmdline(pid)
    if not args:
        return False
    words = {*args, os.path.basename(args[0])}
    return all(m in words for m in marker)


def read_pid(pid_file: Path) -> int | None:
    """Pid stored in `pid_file`, or None when the file is missing or garbled."""
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_pid(pid_file: Path, pid: int) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid}\n")


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our child, so it leaves no zombie."""
    proc = _children.get(pid)
    forget(pid)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0)
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_exit(pid: int, deadline: float) -> bool:
    """Block until `pid` exits or the monotonic `deadline` passes; True if it exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        _reap(pid)
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if poller.poll(max(0, int(remaining * 1000))):
                _reap(pid)
                return True
            if remaining <= 0:
                return False
    finally:
        os.close(fd)


def wait_exit_or(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `pid` to exit; True if it did (a bounded pause
    that ends early when the process dies, used between readiness probes)."""
    return wait_exit(pid, time.monotonic() + timeout)


def terminate(pid: int, marker: Sequence[str], deadline: float) -> bool:
    """SIGTERM `pid` (only if it still matches `marker`) and wait for it to exit;
    escalate to SIGKILL when the deadline passes. True if a process was stopped."""
    if not is_running(pid, marker):
        _reap(pid)
        return False
    os.kill(pid, signal.SIGTERM)
    if wait_exit(pid, deadline):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_exit(pid, time.monotonic() + 5.0)
    return True
