"""Logging: journald with structured fields under systemd, readable stderr otherwise.

Under systemd (stderr is the journal stream named by ``JOURNAL_STREAM``, or
``[daemon] log_target = "journal"``) records go to journald through
systemd-python's JournalHandler, so operators can filter on fields instead of
grepping text: ``journalctl HWGATE_READER="Virtual PCD 00 00"``. A record
carries them as ``extra={"hwgate_reader": ...}`` (also ``hwgate_key``,
``hwgate_peer``, ``hwgate_reason``, ``hwgate_token``). Audit records (logger ``hwgated.audit``,
attribute ``hwgate_audit``) get the same fields from their entry and their own
``SYSLOG_IDENTIFIER=hwgated-audit``, so ``journalctl -t hwgated-audit`` is the
audit trail.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any

AUDIT_LOGGER = "hwgated.audit"
# Below DEBUG: every APDU to and from a card, secrets redacted (hwgated.pcsc.trace).
TRACE = 5
logging.addLevelName(TRACE, "TRACE")
_LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
SYSLOG_IDENTIFIER = "hwgated"
# Third-party loggers kept quieter than the daemon's own (see library_level).
LIBRARY_LOGGERS = ("grpc", "asyncio")
AUDIT_IDENTIFIER = "hwgated-audit"

# record attribute → journal field
RECORD_FIELDS = {
    "hwgate_reader": "HWGATE_READER",
    "hwgate_key": "HWGATE_KEY",
    "hwgate_peer": "HWGATE_PEER",
    "hwgate_reason": "HWGATE_REASON",
    "hwgate_token": "HWGATE_TOKEN",
}
# audit entry key → journal field
AUDIT_FIELDS = {
    "reader": "HWGATE_READER",
    "key": "HWGATE_KEY",
    "subject": "HWGATE_PEER",
    "action": "HWGATE_ACTION",
    "role": "HWGATE_ROLE",
    "outcome": "HWGATE_OUTCOME",
    "listener": "HWGATE_LISTENER",
}
_FIELD_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]*\Z")

Sender = Callable[..., Any]


def journal_fields(record: logging.LogRecord) -> dict[str, str]:
    """The HWGATE_* (and, for audit records, SYSLOG_IDENTIFIER) fields of *record*."""
    fields = {
        field: str(getattr(record, attr))
        for attr, field in RECORD_FIELDS.items()
        if getattr(record, attr, None) is not None
    }
    entry = getattr(record, "hwgate_audit", None)
    if isinstance(entry, dict):
        fields["SYSLOG_IDENTIFIER"] = AUDIT_IDENTIFIER
        fields.update({AUDIT_FIELDS[k]: str(v) for k, v in entry.items() if k in AUDIT_FIELDS})
        outcome = entry.get("outcome")
        if outcome not in (None, "ok"):
            fields.setdefault("HWGATE_REASON", str(outcome))
    return fields


class _JournalFields(logging.Filter):
    """Puts the journal fields on the record, where JournalHandler picks them up."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in journal_fields(record).items():
            setattr(record, name, value)
        return True


def _only_journal_fields(send: Sender) -> Sender:
    """JournalHandler passes every record attribute; journald wants upper-case names."""

    def sender(message: str, /, **fields: Any) -> Any:
        return send(message, **{k: v for k, v in fields.items() if _FIELD_NAME.match(k)})

    return sender


def stderr_is_journal() -> bool:
    """True when systemd connected our stderr to journald (JOURNAL_STREAM=dev:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = stream.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def _journal_handler(sender: Sender | None) -> logging.Handler | None:
    try:
        journal = importlib.import_module("systemd.journal")  # by name: see ops/notify.py
    except ImportError:
        return None
    handler = journal.JournalHandler(
        sender_function=_only_journal_fields(sender or journal.send),
        SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER,
    )
    handler.addFilter(_JournalFields())
    return handler


def _stderr_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    return handler


def setup_logging(level: str, target: str = "auto", *, sender: Sender | None = None) -> str:
    """Configure the root logger once; later calls only change the level (SIGHUP).

    Returns where records go: ``"journal"`` or ``"stderr"``. *sender* replaces
    ``systemd.journal.send`` (tests).
    """
    root = logging.getLogger()
    installed = [h for h in root.handlers if getattr(h, "_hwgate", None)]
    if installed:
        chosen = str(installed[0]._hwgate)  # type: ignore[attr-defined]
    else:
        handler = None
        want_journal = target == "journal" or (target == "auto" and stderr_is_journal())
        if want_journal:
            handler = _journal_handler(sender)
        chosen = "journal" if handler is not None else "stderr"
        handler = handler or _stderr_handler()
        handler._hwgate = chosen  # type: ignore[attr-defined]
        root.addHandler(handler)
        if want_journal and chosen != "journal":
            logging.getLogger("hwgated").warning(
                "journald logging needs systemd-python; logging to stderr"
            )
    set_level(level)
    # Audit records are not chatter: they are kept at any log level.
    logging.getLogger(AUDIT_LOGGER).setLevel(logging.INFO)
    return chosen


def library_level(level: str) -> int:
    """The level of the libraries' own loggers (grpc, asyncio) at daemon level *level*.

    At ``debug`` grpc's aio layer logs "Loaded running loop" several times per RPC,
    which buries the daemon's own debug lines; the libraries stay at WARNING (or the
    daemon's level when higher) unless ``trace`` asks for everything.
    """
    if level == "trace":
        return TRACE
    return max(logging.WARNING, _LEVELS[level])


def set_level(level: str) -> None:
    """Set the running daemon's log level (at start, and on SIGHUP)."""
    logging.getLogger().setLevel(_LEVELS[level])
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level(level))


def effective_level(cli_level: str | None, config_level: str) -> str:
    """The log level in force: ``hwgated --log-level`` wins over ``[daemon] log_level``,
    at start and after every SIGHUP (the file's level counts only without the option)."""
    return cli_level or config_level
