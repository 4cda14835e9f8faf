"""pcscd for the test bed: detect a running one, start one if none answers, stop
only the one we started, and wait for reader state changes.

There is one pcscd per machine (its socket path is compiled in), so a pcscd
that already serves the vpcd readers is used as is and never stopped here.
Reader changes are awaited with `SCardGetStatusChange` and a timeout: the PC/SC
event itself, not a loop of sleeps.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from smartcard import scard

from hwgate_testbed import procs
from hwgate_testbed.paths import VPCD_READER_PREFIX, TestbedPaths

PCSCD_MARKER = ("pcscd", "-f")
# pcscd's own run directory (compiled in: ipcdir=/run/pcscd), its pid file and socket.
PCSCD_RUN_DIR = Path("/run/pcscd")
PCSCD_PID_NAME = "pcscd.pid"
PCSCD_COMM_NAME = "pcscd.comm"
_PROBE_INTERVAL = 0.02  # between readiness probes of a pcscd we just started
_LIVENESS_INTERVAL = 0.25  # how often a reader wait re-checks its give-up condition


# FACTS (Debian 13, pcsc-lite 2.x): Debian builds pcscd 2.x with polkit; every
# client is checked against org.debian.pcsc-lite.access_pcsc / access_card
# (allow_active only), and with no polkit authority reachable (no system D-Bus:
# a container, a CI runner) every client, root included, is refused ("Rejected
# unauthorized PC/SC client"). pcscd 1.9 (Debian 12) has neither polkit nor the
# option. `--disable-polkit` exists only when pcscd was built with polkit, so
# its presence is read from `pcscd --help`, not guessed from the version.
DISABLE_POLKIT = "--disable-polkit"


class PcscError(RuntimeError):
    """pcscd is missing, did not come up, or a reader did not reach a state in time."""


@dataclass(frozen=True)
class ReaderState:
    """One reader as pcscd reports it."""

    name: str
    present: bool
    atr: bytes
    flags: int


@dataclass(frozen=True)
class PcscdStatus:
    """Whether pcscd answers and whether this test bed started it."""

    running: bool
    started_here: bool
    pid: int | None
    stale_cleared: str = ""  # what a dead pcscd had left behind and `up` removed


@contextlib.contextmanager
def _context() -> Iterator[int]:
    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hr != scard.SCARD_S_SUCCESS:
        raise PcscError(f"pcscd unavailable: {scard.SCardGetErrorMessage(hr)}")
    try:
        yield ctx
    finally:
        scard.SCardReleaseContext(ctx)


def list_readers() -> list[str] | None:
    """Reader names, or None when pcscd does not answer."""
    try:
        with _context() as ctx:
            hr, readers = scard.SCardListReaders(ctx, [])
    except PcscError:
        return None
    if hr == scard.SCARD_E_NO_READERS_AVAILABLE:
        return []
    return list(readers) if hr == scard.SCARD_S_SUCCESS else None


def vpcd_answers() -> bool:
    """True when a pcscd answers and lists the vpcd readers."""
    readers = list_readers() or []
    return any(r.startswith(VPCD_READER_PREFIX) for r in readers)


def reader_states() -> list[ReaderState]:
    """Current state of every reader (empty list when pcscd does not answer)."""
    names = list_readers()
    if not names:
        return []
    with _context() as ctx:
        hr, states = scard.SCardGetStatusChange(
            ctx, 0, [(n, scard.SCARD_STATE_UNAWARE) for n in names]
        )
    if hr != scard.SCARD_S_SUCCESS:
        raise PcscError(f"SCardGetStatusChange: {scard.SCardGetErrorMessage(hr)}")
    return [
        ReaderState(name, bool(flags & scard.SCARD_STATE_PRESENT), bytes(atr), flags)
        for name, flags, atr in states
    ]


def card_present(reader: str) -> bool:
    """Whether pcscd currently reports a card in `reader`."""
    return any(s.present for s in reader_states() if s.name == reader)


def wait_for_reader_state(
    reader: str,
    present: bool,
    deadline: float,
    give_up: Callable[[], str | None] | None = None,
) -> float:
    """Block until pcscd reports `reader` with a card (`present`) or empty.

    `deadline` is a `time.monotonic()` value. `give_up` is called every quarter
    second and ends the wait early with its message (e.g. "card process died").
    Returns the monotonic time at which the state was observed.
    Raises PcscError on timeout, on give-up, or when pcscd fails.
    """
    with _context() as ctx:
        current = scard.SCARD_STATE_UNAWARE
        while True:
            remaining = deadline - time.monotonic()
            slice_s = remaining if give_up is None else min(remaining, _LIVENESS_INTERVAL)
            timeout_ms = max(0, int(slice_s * 1000))
            hr, states = scard.SCardGetStatusChange(ctx, timeout_ms, [(reader, current)])
            seen = time.monotonic()
            if hr == scard.SCARD_S_SUCCESS:
                flags = states[0][1]
                if flags & scard.SCARD_STATE_UNKNOWN:
                    raise PcscError(f"no reader named {reader!r}")
                if bool(flags & scard.SCARD_STATE_PRESENT) == present:
                    return seen
                current = flags & ~scard.SCARD_STATE_CHANGED
            elif hr != scard.SCARD_E_TIMEOUT:
                raise PcscError(f"SCardGetStatusChange: {scard.SCardGetErrorMessage(hr)}")
            if give_up is not None and (why := give_up()):
                raise PcscError(f"{reader}: {why}")
            if seen >= deadline:
                want = "a card" if present else "no card"
                raise PcscError(f"{reader}: timed out waiting for {want}")


def pcscd_exe() -> str:
    """The pcscd binary (PATH first; Debian's /usr/sbin when PATH lacks sbin)."""
    return shutil.which("pcscd") or "/usr/sbin/pcscd"


@functools.cache
def supports_disable_polkit(exe: str) -> bool:
    """Whether this pcscd was built with polkit (it then lists --disable-polkit)."""
    try:
        out = subprocess.run(
            [exe, "--help"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return help_lists_disable_polkit(out.stdout + out.stderr)


def help_lists_disable_polkit(help_text: str) -> bool:
    """Whether `pcscd --help` output offers --disable-polkit (as its own option word)."""
    return DISABLE_POLKIT in (word.strip(",") for word in help_text.split())


def is_private_run_dir(run_dir: Path = PCSCD_RUN_DIR) -> bool:
    """Whether `run_dir` is this process's own: a file system mounted right there
    (testbed/isolated mounts a tmpfs on /run/pcscd in its own mount namespace; a
    machine's pcscd keeps its directory inside /run) and, where PID 1's mount
    namespace can be read, not PID 1's. Only then is a pcscd started on it the
    test bed's alone, reachable by nobody else."""
    if not os.path.ismount(run_dir):
        return False
    try:
        return os.readlink("/proc/self/ns/mnt") != os.readlink("/proc/1/ns/mnt")
    except OSError:  # PID 1 is not ours to inspect (not root, or a sandbox's init)
        return True


def command(*args: str, run_dir: Path = PCSCD_RUN_DIR) -> list[str]:
    """argv for a foreground pcscd of the test bed's own.

    On a private run directory (testbed/isolated) a pcscd built with polkit gets
    --disable-polkit: nobody but the bed can reach it, and the bed's clients
    (root, test users, hwgated under test) have no login session polkit would
    accept, nor, in a container, any polkit authority at all. A pcscd that other
    users share keeps polkit: the machine's policy decides.
    """
    exe = pcscd_exe()
    polkit = (
        [DISABLE_POLKIT] if is_private_run_dir(run_dir) and supports_disable_polkit(exe) else []
    )
    return [exe, "-f", *polkit, *args]


def _our_pid(paths: TestbedPaths) -> int | None:
    pid = procs.read_pid(paths.pcscd_pid)
    return pid if pid is not None and procs.is_running(pid, PCSCD_MARKER) else None


def status(paths: TestbedPaths) -> PcscdStatus:
    """Whether pcscd answers, and whether it is the one this test bed started."""
    ours = _our_pid(paths)
    return PcscdStatus(running=vpcd_answers(), started_here=ours is not None, pid=ours)


def _pid_in(pid_file: Path) -> int | None:
    """The pid pcscd wrote ("PID\\n\\0"), or None when missing or garbled."""
    try:
        text = pid_file.read_bytes().replace(b"\0", b"").decode("ascii").strip()
        return int(text)
    except (FileNotFoundError, UnicodeDecodeError, ValueError):
        return None


def _socket_answers(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket `path` (a live pcscd)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
                return False
            raise
    return True


def clear_stale_run_files(run_dir: Path = PCSCD_RUN_DIR) -> str:
    """Remove the pid file and socket a dead pcscd left in `run_dir`; say what was removed.

    A pcscd killed with -9 leaves `pcscd.pid` and `pcscd.comm`. A new pcscd then
    checks the old pid with kill(pid, 0) and, if that succeeds, exits with
    "Another pcscd seems to be running". It succeeds for a zombie (an orphan
    that an init which does not reap never collects) and for an unrelated
    process that reused the pid. So the files are stale, and removed, when the
    pid is not a live pcscd (gone, a zombie, or another program) and nothing
    accepts connections on the socket. A live pcscd's files are never touched.
    """
    pid_file, comm = run_dir / PCSCD_PID_NAME, run_dir / PCSCD_COMM_NAME
    if not (pid_file.exists() or comm.exists()):
        return ""
    pid = _pid_in(pid_file)
    if pid is not None and procs.is_running(pid, ("pcscd",)):
        return ""
    if comm.exists() and _socket_answers(comm):
        return ""
    if pid is None:
        what = "no readable pid"
    elif procs.is_zombie(pid):
        what = f"pid {pid} is a zombie"
    elif procs.state(pid) is None:
        what = f"pid {pid} is gone"
    else:
        what = f"pid {pid} is not pcscd"
    removed = [f for f in (pid_file, comm) if f.exists() or f.is_symlink()]
    for f in removed:
        f.unlink(missing_ok=True)
    return f"removed stale {', '.join(str(f) for f in removed)} ({what})"


def ensure_running(
    paths: TestbedPaths, deadline: float, run_dir: Path = PCSCD_RUN_DIR
) -> PcscdStatus:
    """Use the pcscd that serves the vpcd readers, or start one (`pcscd -f`, never
    --auto-exit: vpcd's readers die with it) and wait until it lists them. Files a
    dead pcscd left behind are removed first (clear_stale_run_files)."""
    if vpcd_answers():
        return status(paths)
    stale = clear_stale_run_files(run_dir)
    # -i: info level, so the log shows reader start-up and "daemon ready".
    pid = procs.spawn_detached(command("-i", run_dir=run_dir), paths.pcscd_log)
    procs.write_pid(paths.pcscd_pid, pid)
    # pcscd has no readiness notification outside systemd: probe its socket,
    # pausing on the process's pidfd so an early exit ends the wait at once.
    while not vpcd_answers():
        if procs.wait_exit_or(pid, _PROBE_INTERVAL):
            paths.pcscd_pid.unlink(missing_ok=True)
            raise PcscError(f"pcscd exited during start-up; see {paths.pcscd_log}")
        if time.monotonic() >= deadline:
            raise PcscError(f"pcscd did not list the vpcd readers in time; see {paths.pcscd_log}")
    return PcscdStatus(running=True, started_here=True, pid=pid, stale_cleared=stale)


def stop_ours(paths: TestbedPaths, deadline: float) -> bool:
    """Stop pcscd only if this test bed started it; True if one was stopped."""
    pid = _our_pid(paths)
    stopped = pid is not None and procs.terminate(pid, PCSCD_MARKER, deadline)
    paths.pcscd_pid.unlink(missing_ok=True)
    return stopped
