"""A booted Debian container with a real systemd as PID 1, driven from outside.

``systemd-nspawn --boot`` on a cached debootstrap tree (tests/systemd/make-rootfs),
with ``--volatile=overlay`` so every run starts from the pristine tree (changes
go to a tmpfs and vanish at exit). This host has no system D-Bus and no
machined, hence ``--register=no --keep-unit``; without machined there is no
``machinectl shell`` or ``systemd-run -M``, so commands run in the container
through ``nsenter`` into every namespace of its PID 1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Container:
    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self.leader = 0
        self.suite = ""  # the Debian release (bookworm, trixie), set by the fixture

    def find_leader(self, deadline: float) -> int:
        """The container's PID 1 as seen from the host: nspawn's descendant whose
        innermost pid is 1."""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited: {self.log.read_text()[-3000:]}")
            for pid in _descendants(self.process.pid):
                with contextlib.suppress(OSError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
                    fields = nspid.split()
                    if len(fields) > 2 and fields[-1] == "1":
                        self.leader = pid
                        return pid
            time.sleep(0.1)
        raise TimeoutError("no container PID 1 appeared")

    def run(
        self,
        command: str | Sequence[str],
        *,
        user: str | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 120,
        cwd: str = "/",
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside (a string goes through bash -euo pipefail)."""
        argv = (
            ["bash", "-euo", "pipefail", "-c", command]
            if isinstance(command, str)
            else list(command)
        )
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        # env -C: nsenter's own --wd=DIR would open DIR before entering the namespaces.
        environment = ["env", "-i", "-C", cwd, f"PATH={PATH}", "LANG=C.UTF-8", "HOME=/root"]
        environment += [f"{k}={v}" for k, v in (env or {}).items()]
        full = ["nsenter", "-t", str(self.leader), "-a", "-r", "-w", *environment, *argv]
        result = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{command!r} exited {result.returncode}\nstdout: {result.stdout}\n"
                f"stderr: {result.stderr}"
            )
        return result

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(self, what: str, predicate, timeout: float, interval: float = 0.25):  # type: ignore[no-untyped-def]
        """Poll ``predicate`` (the container's own view) until truthy or the deadline."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")

    def poweroff(self, timeout: float = 60) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # nspawn: a clean poweroff of the container
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{parent}/task"):
                children = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
                for child in map(int, children):
                    found.append(child)
                    todo.append(child)
    return found


@contextlib.contextmanager
def booted(rootfs: Path, binds: dict[Path, str], log: Path, name: str) -> Iterator[Container]:
    """Boot ``rootfs`` (read-only binds: host path → container path) and wait for
    ``systemctl is-system-running --wait``; power it off at exit."""
    argv = [
        "systemd-nspawn",
        "--boot",
        "--register=no",
        "--keep-unit",
        "--private-network",
        "--volatile=overlay",
        "--console=passive",
        f"--machine={name}",
        f"--directory={rootfs}",
        *(f"--bind-ro={host}:{inside}" for host, inside in binds.items()),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    container = Container(process, log)
    try:
        container.find_leader(time.monotonic() + 60)
        container.wait_for(
            "the container's systemd to finish booting",
            lambda: (
                container.run(
                    ["systemctl", "is-system-running", "--wait"], check=False, timeout=120
                ).stdout.strip()
                in ("running", "degraded")
            ),
            timeout=180,
            interval=1,
        )
        yield container
    finally:
        container.poweroff()
