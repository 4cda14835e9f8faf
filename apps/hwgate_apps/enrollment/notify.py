"""E-mail notices to the cardholder: what they say, where they go, how they are sent.

Where: the PIV Authentication certificate's SAN rfc822Name, else the address
the kiosk sent with the enrollment (``email`` in POST /enrollments). No
address, or no SMTP server configured: no notice (nothing is queued).

How: plain SMTP to ``smtp_host:smtp_port``, optionally upgraded with STARTTLS
(``smtp_starttls``; the server certificate is checked against ``smtp_cafile``
or the system store) and optionally authenticated (``smtp_username`` and the
password read from ``smtp_password_file``). Messages are made when the event
commits (see :mod:`.outbox`) and sent later, so their text is fixed then.

Every message has a unique Message-ID made at queueing time; a retry resends
the same bytes, so a receiver sees a duplicate (at-least-once delivery) as
the same Message-ID.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from cryptography import x509

from hwgate_apps.enrollment.config import EnrollmentConfig

_EMAIL = re.compile(r"^[^@\s<>]{1,64}@[A-Za-z0-9.-]{1,253}$")
SMTP_TIMEOUT = 10.0


def valid_email(value: str) -> bool:
    return bool(_EMAIL.match(value))


def email_of(cert: x509.Certificate, offered: Any = None) -> str | None:
    """The card certificate's rfc822Name, else a well-formed *offered* address."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for address in san.get_values_for_type(x509.RFC822Name):
            if valid_email(address):
                return address
    except x509.ExtensionNotFound:
        pass
    if isinstance(offered, str) and valid_email(offered):
        return offered
    return None


def compose(
    config: EnrollmentConfig, *, to: str, subject: str, body: str, when: Any
) -> tuple[str, bytes]:
    """(Message-ID, the RFC 5322 bytes) of one notice."""
    msg = EmailMessage()
    domain = config.mail_from.rsplit("@", 1)[-1].strip(">") or "localhost"
    message_id = make_msgid("hwgate-enrollment", domain=domain)
    msg["Message-ID"] = message_id
    msg["From"] = config.mail_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg.set_content(body)
    return message_id, bytes(msg)


def issued_text(subject_dn: str, serial: str, not_after: str) -> tuple[str, str]:
    return (
        "A derived PIV credential was issued to you",
        f"A derived PIV credential was issued for {subject_dn}.\n\n"
        f"Certificate serial: {serial}\nValid until: {not_after}\n\n"
        "If you did not request it, contact your security office now.\n",
    )


def revoked_text(subject_dn: str, serial: str, why: str) -> tuple[str, str]:
    return (
        "Your derived PIV credential was revoked",
        f"The derived PIV credential of {subject_dn} (certificate serial {serial}) "
        f"was revoked: {why}.\n\nIt no longer works on any system.\n",
    )


def send(config: EnrollmentConfig, recipient: str, message: bytes) -> None:
    """Hand one message to the configured SMTP server; raises on any failure."""
    with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=SMTP_TIMEOUT) as smtp:
        if config.smtp_starttls:
            context = ssl.create_default_context(cafile=config.smtp_cafile or None)
            smtp.starttls(context=context)
        if config.smtp_username:
            password = Path(config.smtp_password_file).read_text().strip()
            smtp.login(config.smtp_username, password)
        sender = config.mail_from.rsplit("<", 1)[-1].strip(">").strip()
        smtp.sendmail(sender, [recipient], message)
