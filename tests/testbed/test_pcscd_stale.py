"""``hwgate-testbed up`` after pcscd died hard (kill -9) and left its pid file and socket:
the pid names a zombie (an init that does not reap orphans) or, reused, another program.
pcscd itself then refuses ("Another pcscd seems to be running"); the test bed cleans up."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwgate_testbed import procs
from hwgate_testbed.pcscd import clear_stale_run_files
from hwgate_testbed.timing import scaled

PROBE = Path(__file__).with_name("stale_pcscd_probe.py")


@pytest.fixture
def zombie() -> Iterator[int]:
    """A real zombie: a child that exited and is not reaped until the test ends."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    yield pid
    os.waitpid(pid, 0)


def _leave(run: Path, pid: int | str, *, listening: bool = False) -> socket.socket | None:
    (run / "pcscd.pid").write_bytes(f"{pid}\n\0".encode())
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(run / "pcscd.comm"))
    if listening:
        sock.listen()
        return sock
    sock.close()
    return None


def test_zombie_pid_is_stale(tmp_path: Path, zombie: int) -> None:
    assert procs.state(zombie) == "Z"
    os.kill(zombie, 0)  # what pcscd checks: it succeeds for a zombie
    _leave(tmp_path, zombie)
    said = clear_stale_run_files(tmp_path)
    assert f"pid {zombie} is a zombie" in said
    assert not (tmp_path / "pcscd.pid").exists() and not (tmp_path / "pcscd.comm").exists()


def test_pid_of_another_program_is_stale(tmp_path: Path) -> None:
    _leave(tmp_path, os.getpid())  # alive, but python, not pcscd
    assert f"pid {os.getpid()} is not pcscd" in clear_stale_run_files(tmp_path)
    assert not (tmp_path / "pcscd.pid").exists()


def _fake_pcscd() -> subprocess.Popen[bytes]:
    """A `sleep 300` whose argv[0] is "pcscd", returned once /proc shows it so.

    Popen returns when the exec closed the child's close-on-exec pipe, and the kernel
    does that before it sets up the new program's arguments: under load /proc's
    cmdline was read empty in between (two stress runs failed so)."""
    fake = subprocess.Popen(["pcscd", "300"], executable="/bin/sleep")
    deadline = time.monotonic() + scaled(10)
    while procs.cmdline(fake.pid) != ["pcscd", "300"]:
        if time.monotonic() > deadline:
            fake.kill()
            fake.wait()
            raise AssertionError(f"/proc never showed the fake pcscd: {procs.cmdline(fake.pid)}")
        time.sleep(0.01)
    return fake


def test_gone_or_garbled_pid_is_stale(tmp_path: Path) -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    _leave(tmp_path, pid_max)  # no process can have it
    assert "is gone" in clear_stale_run_files(tmp_path)
    _leave(tmp_path, "garbage")
    assert "no readable pid" in clear_stale_run_files(tmp_path)
    assert not list(tmp_path.iterdir())
    assert clear_stale_run_files(tmp_path) == ""  # nothing there: nothing to do


def test_live_pcscd_or_live_socket_is_left_alone(tmp_path: Path) -> None:
    fake = _fake_pcscd()
    try:
        assert procs.is_running(fake.pid, ("pcscd",))
        _leave(tmp_path, fake.pid)
        assert clear_stale_run_files(tmp_path) == ""
        assert (tmp_path / "pcscd.pid").exists() and (tmp_path / "pcscd.comm").exists()
    finally:
        fake.kill()
        fake.wait()
    (tmp_path / "pcscd.comm").unlink()
    server = _leave(tmp_path, os.getpid(), listening=True)  # someone answers on the socket
    try:
        assert clear_stale_run_files(tmp_path) == ""
        assert (tmp_path / "pcscd.comm").exists()
    finally:
        assert server is not None
        server.close()


def test_a_pid_of_an_exited_child_reused_by_another_program_is_judged_by_proc(
    tmp_path: Path,
) -> None:
    """pid_max is 32768 here and a suite run starts thousands of processes: the pid of a
    card or pcscd the bed started and that has exited comes round again. The registry of
    the bed's own children must not make the new owner of that pid look dead (a stress
    run failed so: a live "pcscd" judged not running)."""
    mine = procs.spawn_detached(["true"], tmp_path / "true.log")
    procs._children[mine].wait()  # exited; the registry still names it
    other = _fake_pcscd()
    try:
        # The kernel handing *mine*'s pid to *other*, without waiting for the wrap.
        procs._children[other.pid] = procs._children.pop(mine)
        procs._argv[other.pid] = procs._argv.pop(mine)
        procs._pidfds[other.pid] = procs._pidfds.pop(mine)
        assert procs.is_running(other.pid, ("pcscd",))
        assert other.pid not in procs._children  # the exited child is forgotten
    finally:
        other.kill()
        other.wait()
        procs.forget(other.pid)


NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


@pytest.mark.skipif(not os.access(NS_LAST_PID, os.W_OK), reason="needs root (ns_last_pid)")
def test_a_child_reaped_behind_the_registrys_back_does_not_lend_its_argv_to_its_pids_heir(
    tmp_path: Path,
) -> None:
    """A test that SIGKILLs a bed process reaps it with its own os.waitpid; the registry
    still held the Popen, whose poll() then asked the kernel about the pid's *next*
    owner. A CI run judged a fresh "pcscd" not running by the argv of the card that had
    the pid before. Here the kernel is asked for that very pid (ns_last_pid)."""
    for _ in range(50):  # another process may take the pid first: try again
        mine = procs.spawn_detached(["true"], tmp_path / "true.log")
        os.waitpid(mine, 0)  # reaped, not through the registry's Popen
        NS_LAST_PID.write_text(f"{mine - 1}\n")
        heir = _fake_pcscd()
        try:
            if heir.pid != mine:
                procs.forget(mine)
                continue
            assert procs.is_running(heir.pid, ("pcscd",))
            assert procs._argv.get(heir.pid) is None  # the dead child is forgotten
            return
        finally:
            heir.kill()
            heir.wait()
    pytest.fail("the kernel never handed the reaped pid out again")


def _can_unshare() -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["unshare", "-mn", "true"], capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture(scope="module")
def bed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for both runs: the second `up` reuses the first's provisioning."""
    return tmp_path_factory.mktemp("stale-bed")


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare (a private /run/pcscd)")
@pytest.mark.parametrize("kind", ["zombie", "other"])
def test_up_after_pcscd_left_stale_files(kind: str, bed_dir: Path) -> None:
    """In a private namespace: pcscd alone refuses to start; `up` cleans and starts it."""
    script = 'mount -t tmpfs tmpfs /run/pcscd && ip link set lo up && exec "$@"'
    done = subprocess.run(
        ["unshare", "-mn", "--propagation", "private", "sh", "-c", script, "sh",
         sys.executable, str(PROBE), kind, str(bed_dir)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == ("Z" if kind == "zombie" else "other")
    # The reported failure, reproduced with pcscd itself:
    assert result["bare_rc"] != 0 and "Another pcscd" in result["bare_out"], result["bare_out"]
    assert result["up_rc"] == 0, result["up_out"]
    assert "removed stale /run/pcscd/pcscd.pid, /run/pcscd/pcscd.comm" in result["up_out"]
    status = result["status"]
    assert status["pcscd"]["running"] and status["pcscd"]["started_here"], status
    assert result["down_rc"] == 0
