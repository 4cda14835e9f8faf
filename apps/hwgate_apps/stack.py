"""The whole reference setup on one test bed: hwgated, enrollment server, kiosk.

Used by ``make demo``, ``make kiosk`` and tests/apps. hwgated runs as a
process with the test bed's own config (kiosk socket, mTLS on 7443); the two
web servers run in threads of this process on sockets bound before they
start, so nobody has to wait for them to come up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hwgate
from hwgate_apps import web
from hwgate_apps.devpki import SPIFFE_KIOSKS, kiosk_certificate, web_certificate
from hwgate_apps.enrollment.config import EnrollmentConfig
from hwgate_apps.enrollment.server import make_app as enrollment_app
from hwgate_apps.enrollment.transport import server_tls
from hwgate_apps.kiosk.server import make_app as kiosk_app
from hwgate_testbed.paths import TCP_LISTEN, TestbedPaths
from hwgate_testbed.tlspki import spiffe_uri

HWGATED_START_TIMEOUT = 90.0  # seconds; a loaded machine took longer than 20 s
KIOSK_NAME = "kiosk-01"  # the stack's kiosk, as the enrollment server knows it


def start_hwgated(
    paths: TestbedPaths, log: Path, config: Path | None = None
) -> subprocess.Popen[bytes]:
    """hwgated on the test bed's config (or *config*); returns once its kiosk socket answers.

    RuntimeError, with the reason, when it cannot start: another hwgated already
    serves the test bed (``make run``), or the daemon exited or never answered.
    """
    if socket_in_use(paths.kiosk_socket):
        raise RuntimeError(
            f"another hwgated already serves {paths.kiosk_socket} (make run?): stop it first"
        )
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hwgated", "--config", str(config or paths.daemon_config)],
        stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    # The socket appears once pcscd and the token answered; on a loaded machine that
    # (and the workers' interpreters starting) takes well over the usual second.
    # Another hwgated on the same socket (`make run`) answers too: only a live process
    # of our own counts, and its exit ends the wait at once with the log's reason.
    # A channel per attempt: one channel that failed to connect retries on gRPC's
    # growing reconnect backoff (1 s, 1.6 s, 2.6 s ... up to 120 s), so a daemon that
    # came up after a few failures was seen tens of seconds late (a stack start took
    # 65 s in the suite, and over 90 s in a stress run).
    deadline = time.monotonic() + HWGATED_START_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        if not paths.kiosk_socket.exists():
            time.sleep(0.1)  # polling for the daemon's socket, with the deadline above
            continue
        try:
            with hwgate.connect(f"unix://{paths.kiosk_socket}") as client:
                client.wait_ready(0.5)
        except hwgate.HwgateError:
            continue
        if proc.poll() is None:
            return proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"hwgated did not come up in {HWGATED_START_TIMEOUT:.0f}s; see {log}")
    raise RuntimeError(f"hwgated exited with status {proc.returncode}: {_last_line(log)}")


def _last_line(log: Path) -> str:
    """The daemon's own last words (e.g. "... hwgate.sock is in use by a running process")."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return f"{lines[-1].strip()} (log: {log})" if lines else f"see {log}"


def socket_in_use(path: Path) -> bool:
    """Whether a process accepts connections on the Unix socket *path* now."""
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def enrollment_config(
    paths: TestbedPaths, workdir: Path, port: int, **over: Any
) -> EnrollmentConfig:
    """The enrollment server's config for this test bed (mTLS client = enrollment.pem).

    Kiosks and administrators are known by client certificates of the bed's mTLS
    CA: every kiosk certificate of devpki, and the bed's admin certificate."""
    config = EnrollmentConfig(
        origin=f"https://127.0.0.1:{port}",
        database=workdir / "enrollment.sqlite3",
        piv_issuer_ca=paths.pki_cert("piv-ca"),
        issuing_ca_cert=paths.pki_cert("issuing-ca"),
        hwgate_target=TCP_LISTEN,
        hwgate_cacert=paths.pki_cert("ca"),
        hwgate_cert=paths.pki_cert("enrollment"),
        hwgate_key=paths.pki_key("enrollment"),
        escrow_dir=str(paths.escrow),  # the bed escrows every card's 9D key
        # The bed's PIV CA publishes its CRL as a file (hwgate-testbed revoke updates it);
        # derived certificates point at the server's own CRL.
        piv_crl_url=str(paths.pki / "piv-ca.crl"),
        crl_url=f"https://127.0.0.1:{port}/crl/issuing-ca.crl",
        client_ca=paths.pki_cert("ca"),
        kiosk_identities=(f"{SPIFFE_KIOSKS}*",),
        admin_identities=(spiffe_uri("admin"),),
    )
    return replace(config, **over)


@dataclass
class Stack:
    """Running services; ``stop()`` ends what this object started, in reverse order."""

    paths: TestbedPaths
    workdir: Path
    hwgated: subprocess.Popen[bytes] | None = None
    enrollment: web.Served | None = None
    kiosk: web.Served | None = None
    enrollment_url: str = ""
    kiosk_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tls_ca(self) -> str:
        return str(self.paths.pki_cert("ca"))

    def stop(self) -> None:
        for served in (self.kiosk, self.enrollment):
            if served is not None:
                served.stop()
        if "enrollment_app" in self.extra:  # its outbox worker and lifecycle threads
            self.extra["enrollment_app"].state.service.lifecycle.stop()
        if self.hwgated is not None and self.hwgated.poll() is None:
            self.hwgated.send_signal(signal.SIGTERM)
            try:
                self.hwgated.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.hwgated.kill()


def start_stack(
    paths: TestbedPaths,
    workdir: Path,
    *,
    enrollment_port: int = 8443,
    kiosk_port: int = 8080,
    with_hwgated: bool = True,
    daemon_config: Path | None = None,
    kiosk_listener: socket.socket | None = None,
    **enrollment_over: Any,
) -> Stack:
    """hwgated (unless already running), the enrollment server (HTTPS) and the kiosk.

    *kiosk_listener*: an already bound socket for the kiosk page (``make kiosk``
    binds it in the host's network namespace before entering a private one).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(paths, workdir)
    try:
        if with_hwgated:
            stack.hwgated = start_hwgated(paths, workdir / "hwgated.log", daemon_config)
        esock = web.bind("127.0.0.1", enrollment_port)
        eport = esock.getsockname()[1]
        config = enrollment_config(paths, workdir, eport, **enrollment_over)
        cert, key = web_certificate(paths.pki, workdir / "tls")
        stack.enrollment = web.serve_in_thread(
            enrollment_app(config), esock, **server_tls(config, str(cert), str(key))
        )
        stack.enrollment_url = config.origin
        ksock = kiosk_listener or web.bind("127.0.0.1", kiosk_port)
        kcert, kkey = kiosk_certificate(paths.pki, workdir / "tls", KIOSK_NAME)
        stack.extra["kiosk_cert"] = (str(kcert), str(kkey))
        app = kiosk_app(f"unix://{paths.kiosk_socket}", stack.enrollment_url, stack.tls_ca,
                        "*", str(kcert), str(kkey))  # fmt: skip
        stack.kiosk = web.serve_in_thread(app, ksock)
        stack.kiosk_url = f"http://127.0.0.1:{ksock.getsockname()[1]}"
        stack.extra["enrollment_app"] = stack.enrollment.server.config.app
        stack.extra["kiosk_app"] = app
    except BaseException:
        stack.stop()
        raise
    return stack
