"""Helpers for the lifecycle tests: a real SMTP server, test cards, the stack they use.

The SMTP server is aiosmtpd's, in a thread of this process on a loopback port
it binds itself; tests read what it received and wait on a condition for new
mail (no sleeps). Cards made for a test live in the bed's card directory under
a unique name and are taken off the CRL and deleted afterwards.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import secrets
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from hwgate_apps.enrollment.service import EnrollmentService
from hwgate_apps.stack import Stack, start_stack
from hwgate_testbed import cards as card_store
from hwgate_testbed.paths import TestbedPaths
from hwgate_testbed.vcard.piv_ca import PivCa, ensure_piv_ca
from hwgate_testbed.vcard.provision import provision_card
from support.daemonview import process_alive, watch

MAIL_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SmtpSink:
    """aiosmtpd on 127.0.0.1:port; keeps every message it accepted."""

    port: int = field(default_factory=free_port)
    messages: list[EmailMessage] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    # STARTTLS offered with this server context, and required before MAIL.
    tls: ssl.SSLContext | None = None
    _controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._cond:
            self.messages.append(msg)  # type: ignore[arg-type]
            self._cond.notify_all()
        return "250 OK"

    def start(self) -> None:
        tls = {"tls_context": self.tls, "require_starttls": True} if self.tls else {}
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **tls)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[EmailMessage]:
        with self._cond:
            return [m for m in self.messages if m["To"] == address]

    def wait_for(
        self, ready: Callable[[list[EmailMessage]], bool], timeout: float = MAIL_TIMEOUT
    ) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m["To"], m["Subject"]) for m in self.messages]
                    raise AssertionError(f"mail never arrived; the server has {seen}")
                self._cond.wait(left)
            return list(self.messages)


def hwgated_config(paths: TestbedPaths, workdir: Path) -> Path:
    """The bed's daemon config with room for the many PIN checks of a test module."""
    text = re.sub(r"verify_pin_per_minute = \d+", "verify_pin_per_minute = 10000",
                  paths.daemon_config.read_text())  # fmt: skip
    config = workdir / "hwgated.toml"
    config.write_text(text)
    return config


@contextmanager
def life_stack(testbed: Any, workdir: Path, **over: Any) -> Iterator[Stack]:
    """The reference stack with fast CRL/outbox settings and *over* for the service."""
    paths = testbed.paths
    settings: dict[str, Any] = {
        "crl_cache_seconds": 0.0, "outbox_interval": 0.2, "outbox_retry": 0.2,
        "mail_from": "hwgate enrollment <enrollment@hwgate.test>", **over,
    }  # fmt: skip
    running = start_stack(paths, workdir, enrollment_port=0, kiosk_port=0,
                          daemon_config=hwgated_config(paths, workdir), **settings)  # fmt: skip
    service = service_of(running)
    service.config = dataclasses.replace(service.config, max_credentials_per_cardholder=10_000)
    try:
        with watch("life hwgated", f"unix:{paths.kiosk_socket}", process_alive(running.hwgated)):
            yield running
    finally:
        running.stop()


def service_of(stack: Stack) -> EnrollmentService:
    return stack.extra["enrollment_app"].state.service  # type: ignore[no-any-return]


@dataclass(frozen=True)
class MadeCard:
    """A card provisioned for one test (name, e-mail in its certificates' SAN)."""

    name: str
    email: str
    directory: Path


@contextmanager
def made_card(
    paths: TestbedPaths, cards: Any, prefix: str, *, ca: PivCa | None = None, email: bool = True
) -> Iterator[MadeCard]:
    """Provision card PREFIX-xxxx (by *ca*, default the bed's PIV CA); undo it all after.

    Clean-up: the card is removed from its reader, taken off the bed's CRL and
    its directory deleted, so the bed is as the test found it.
    """
    name = f"{prefix}-{secrets.token_hex(3)}"
    address = f"{name}@hwgate.test" if email else ""
    directory = paths.card_dir(name)
    provision_card(directory, name, "ecc", ca or ensure_piv_ca(paths.pki), email=address or None)
    try:
        yield MadeCard(name, address, directory)
    finally:
        cards.remove_all()
        if ca is None:
            card_store.revoke_card(paths, name, "key_compromise", undo=True)
        shutil.rmtree(directory, ignore_errors=True)


def write_config_toml(service: EnrollmentService, path: Path) -> Path:
    """The running service's config as a TOML file (for `hwgate-enrollment lifecycle`)."""
    lines = []
    for f in dataclasses.fields(service.config):
        value = getattr(service.config, f.name)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = repr(value)
        else:
            text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{f.name} = {text}")
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def running_smtp() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on a free loopback port, for one module."""
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@contextmanager
def mailing_stack(testbed: object, smtp: SmtpSink, workdir: Path) -> Iterator[Stack]:
    """The reference stack whose enrollment server mails through *smtp*."""
    with life_stack(testbed, workdir, smtp_host="127.0.0.1", smtp_port=smtp.port) as running:
        yield running
