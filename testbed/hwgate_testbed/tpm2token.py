"""The test bed's second PKCS#11 implementation: tpm2-pkcs11 over a software TPM.

Three processes, all under ``DIR/tpm2/`` and started detached like pcscd:

- ``swtpm socket --tpm2``: the TPM. The TCTI that reaches it speaks TCP only,
  so it listens on two free adjacent 127.0.0.1 ports (commands, control);
- ``dbus-daemon --session`` on ``DIR/tpm2/bus``: a private bus, never the host's;
- ``tpm2-abrmd --session``: the resource manager on that bus. tpm2-pkcs11 straight
  on swtpm runs out of TPM object slots on key creation; through abrmd it works.

The token is created through PKCS#11 itself (``C_InitToken`` and ``C_InitPIN``
by opensc's ``pkcs11-tool``) with an ECC primary key, which takes about a second;
``tpm2_ptool``'s RSA primary takes 10-20 s on swtpm. Bring-up as a whole costs
1-2 s, so the suite starts it only when a test asks for it (see ``down`` for the
other end). PINs are random, kept in 0600 files and passed to ``pkcs11-tool``
on its command line only (as ``softhsm2-util`` gets SoftHSM's).
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hwgate_testbed import procs
from hwgate_testbed.fsutil import write_private
from hwgate_testbed.paths import TestbedPaths

TPM2_TOKEN_LABEL = "hwgate-tpm2"
_MODULE_GLOB = "/usr/lib/*/pkcs11/libtpm2_pkcs11.so"
# What tpm2-pkcs11 (in every process that loads it) needs to find its TPM and store.
TCTI = "tabrmd:bus_type=session"
_PROBE_INTERVAL = 0.02  # pause between readiness probes (ends early if the process dies)
_START_TIMEOUT = 15.0


class Tpm2Error(RuntimeError):
    """The software TPM stack or its token could not be brought up."""


@dataclass(frozen=True)
class Tpm2Layout:
    """Where everything of the tpm2 token lives inside one test bed directory."""

    root: Path

    @classmethod
    def of(cls, paths: TestbedPaths) -> Tpm2Layout:
        return cls(paths.root / "tpm2")

    state = property(lambda self: self.root / "swtpm-state")
    store = property(lambda self: self.root / "store")
    bus = property(lambda self: self.root / "bus")
    port_file = property(lambda self: self.root / "swtpm.port")
    user_pin = property(lambda self: self.root / "user.pin")
    so_pin = property(lambda self: self.root / "so.pin")
    log = property(lambda self: self.root / "tpm2.log")

    def pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"


@dataclass(frozen=True)
class Tpm2Token:
    """How to reach the token: its module, label, PIN file and the environment
    every process loading the module needs (no PIN values)."""

    label: str
    module: Path
    user_pin_file: Path
    env: dict[str, str]

    def user_pin(self) -> str:
        return self.user_pin_file.read_text().strip()


def module_path() -> Path:
    """tpm2-pkcs11's module (the multiarch directory differs per architecture)."""
    found = sorted(glob.glob(_MODULE_GLOB))
    if not found:
        raise Tpm2Error("libtpm2_pkcs11.so not found: install libtpm2-pkcs11-1")
    return Path(found[0])


def available() -> bool:
    """True when every program and the module this token needs are installed."""
    tools = ("swtpm", "dbus-daemon", "dbus-send", "tpm2-abrmd", "pkcs11-tool")
    return all(_which(t) for t in tools) and bool(glob.glob(_MODULE_GLOB))


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def environment(layout: Tpm2Layout) -> dict[str, str]:
    return {
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={layout.bus}",
        "TPM2_PKCS11_STORE": str(layout.store),
        "TPM2_PKCS11_TCTI": TCTI,
    }


def up(paths: TestbedPaths) -> Tpm2Token:
    """Start what is not running (swtpm, the bus, abrmd), create the token if the
    store has none; idempotent. The token survives ``down`` + ``up`` (state on disk)."""
    layout = Tpm2Layout.of(paths)
    layout.root.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + _START_TIMEOUT
    try:
        port = _ensure_swtpm(layout, deadline)
        _ensure_bus(layout, deadline)
        _ensure_abrmd(layout, port, deadline)
        token = Tpm2Token(TPM2_TOKEN_LABEL, module_path(), layout.user_pin, environment(layout))
        if not layout.user_pin.exists():
            _init_token(layout, token)
    except Tpm2Error:
        down(paths)  # a half-started stack would outlive the caller that gave up on it
        raise
    return token


def down(paths: TestbedPaths) -> list[str]:
    """Stop the processes ``up`` started (abrmd, then the bus, then swtpm); keep files."""
    layout = Tpm2Layout.of(paths)
    stopped = []
    for name in ("tpm2-abrmd", "dbus-daemon", "swtpm"):
        pid = procs.read_pid(layout.pid_file(name))
        if pid is None:
            continue
        if procs.terminate(pid, (name,), time.monotonic() + 10.0):
            stopped.append(name)
        layout.pid_file(name).unlink(missing_ok=True)
    return stopped


def running(paths: TestbedPaths) -> bool:
    """True when all three processes of this test bed's TPM stack are alive."""
    layout = Tpm2Layout.of(paths)
    return all(_alive(layout, n) for n in ("swtpm", "dbus-daemon", "tpm2-abrmd"))


def _alive(layout: Tpm2Layout, name: str) -> bool:
    pid = procs.read_pid(layout.pid_file(name))
    return pid is not None and procs.is_running(pid, (name,))


def _spawn(layout: Tpm2Layout, name: str, argv: list[str], env: dict[str, str]) -> int:
    pid = procs.spawn_detached(argv, layout.log, env={**os.environ, **env})
    procs.write_pid(layout.pid_file(name), pid)
    return pid


def _wait(pid: int, what: str, ready: object, deadline: float, layout: Tpm2Layout) -> None:
    """Probe ``ready()`` until it holds; fail early when the process dies."""
    assert callable(ready)
    while not ready():
        if procs.wait_exit_or(pid, _PROBE_INTERVAL):
            raise Tpm2Error(f"{what} exited during start-up; see {layout.log}")
        if time.monotonic() > deadline:
            raise Tpm2Error(f"{what} not ready in time; see {layout.log}")


def _free_port_pair() -> int:
    """A loopback port P such that P and P+1 are free now (swtpm binds them right
    after): the swtpm TCTI finds the control channel at the command port + 1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise Tpm2Error("no two adjacent free loopback ports for swtpm")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


def _ensure_swtpm(layout: Tpm2Layout, deadline: float) -> int:
    if _alive(layout, "swtpm"):
        return int(layout.port_file.read_text())
    layout.state.mkdir(exist_ok=True)
    port = _free_port_pair()
    layout.port_file.write_text(f"{port}\n")
    argv = [
        "swtpm", "socket", "--tpm2",
        "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
        "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
        "--tpmstate", f"dir={layout.state}",
        "--flags", "not-need-init,startup-clear",
    ]  # fmt: skip
    pid = _spawn(layout, "swtpm", argv, {})
    _wait(pid, "swtpm", lambda: _accepts(port), deadline, layout)
    return port


def _ensure_bus(layout: Tpm2Layout, deadline: float) -> None:
    if _alive(layout, "dbus-daemon"):
        return
    layout.bus.unlink(missing_ok=True)
    argv = ["dbus-daemon", "--session", "--nofork", "--nopidfile",
            f"--address=unix:path={layout.bus}"]  # fmt: skip
    pid = _spawn(layout, "dbus-daemon", argv, {})
    _wait(pid, "dbus-daemon", layout.bus.exists, deadline, layout)


def _abrmd_on_bus(layout: Tpm2Layout) -> bool:
    argv = ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/",
            "org.freedesktop.DBus.NameHasOwner", "string:com.intel.tss2.Tabrmd"]  # fmt: skip
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": f"unix:path={layout.bus}"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    return done.returncode == 0 and "boolean true" in done.stdout


def _ensure_abrmd(layout: Tpm2Layout, port: int, deadline: float) -> None:
    if _alive(layout, "tpm2-abrmd"):
        return
    exe = _which("tpm2-abrmd") or "tpm2-abrmd"
    # --allow-root: the suite runs as root in its namespaces; the bus is ours alone.
    argv = [exe, "--session", "--allow-root", f"--tcti=swtpm:host=127.0.0.1,port={port}"]
    pid = _spawn(layout, "tpm2-abrmd", argv, environment(layout))
    _wait(pid, "tpm2-abrmd", lambda: _abrmd_on_bus(layout), deadline, layout)


def _init_token(layout: Tpm2Layout, token: Tpm2Token) -> None:
    """C_InitToken on the store's free slot, then C_InitPIN (python-pkcs11 has neither)."""
    layout.store.mkdir(exist_ok=True)
    user_pin, so_pin = secrets.token_hex(8), secrets.token_hex(8)
    base = ["pkcs11-tool", "--module", str(token.module)]
    steps = [
        [*base, "--init-token", "--label", token.label, "--so-pin", so_pin],
        [*base, "--token-label", token.label, "--init-pin", "--so-pin", so_pin,
         "--pin", user_pin],
    ]  # fmt: skip
    env = {**os.environ, **token.env}
    for argv in steps:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise Tpm2Error(f"pkcs11-tool {' '.join(argv[3:5])}... failed: {done.stderr.strip()}")
    write_private(layout.so_pin, so_pin + "\n")
    write_private(layout.user_pin, user_pin + "\n")  # last: its presence means "token made"
