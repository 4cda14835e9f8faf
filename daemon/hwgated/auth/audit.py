"""The audit log: one structured record per security-relevant act.

Who (role, subject, listener), what (action), on what (reader, slot, key),
and the outcome (ok, or the error reason). Never a PIN, a secret or key
material: callers pass only the fields below, and values are stringified
short scalars. Records go to a JSON-lines file, or to the ``hwgated.audit``
logger (stderr, or journald under systemd).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from hwgated.auth.identity import Caller, current_caller

log = logging.getLogger("hwgated.audit")

_FORBIDDEN = frozenset({"pin", "puk", "secret", "value", "key_material", "password"})

# A field value is a name, an id or a short print, never a payload: anything
# longer was passed by mistake (a blob, a whole certificate) and is cut so one
# record stays one readable line and cannot carry bulk data out of the daemon.
MAX_VALUE_CHARS = 256
_ELLIPSIS = "…"

# json.dumps(..., sort_keys=True) builds a new JSONEncoder on every call; one
# encoder, made once, writes the same text (every record is on a request's path).
_ENCODE = json.JSONEncoder(sort_keys=True).encode


def _clip(value: object) -> int | bool | str:
    if isinstance(value, int | bool):
        return value
    text = str(value)
    if len(text) > MAX_VALUE_CHARS:
        return text[: MAX_VALUE_CHARS - 1] + _ELLIPSIS
    return text


class AuditLog:
    """Writes audit records; thread-safe (HSM and card callbacks may log from threads).

    Writing never raises into the caller: an audit record is written after the
    act it describes, and a full disk must not turn a signature that was made
    into an error the client retries. A write failure is logged once (not once
    per call, which would flood the journal) and the record goes to the
    ``hwgated.audit`` logger instead; a later success is logged as recovery.
    """

    def __init__(self, file: Path | None = None) -> None:
        self._file = file
        self._lock = threading.Lock()
        self._failing = False
        self._out: int | None = None  # the open file's descriptor (O_APPEND)
        self._inode: tuple[int, int] | None = None
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.close(fd)

    def record(
        self, action: str, outcome: str = "ok", *, caller: Caller | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Write one record; returns it (tests, metrics)."""
        bad = _FORBIDDEN.intersection(fields)
        if bad:
            raise ValueError(f"audit fields may not carry {sorted(bad)}")
        who = caller or current_caller()
        entry: dict[str, Any] = {
            "time": _now(),
            "action": action,
            "outcome": outcome,
            "role": who.role,
            "subject": who.subject,
            "listener": who.listener,
        }
        if who.peer:
            entry["peer"] = who.peer
        entry.update({k: _clip(v) for k, v in fields.items() if v is not None})
        line = _ENCODE(entry)
        if self._file is None or not self._write(line):
            log.info("%s", line, extra={"hwgate_audit": entry})
        return entry

    def _write(self, line: str) -> bool:
        """Append *line* to the file; False (logged once per outage) when that fails.

        The file stays open between records (an open/close per record cost more than
        the rest of an HSM signature's bookkeeping); a stat per record notices a
        rotated or removed file and reopens it.
        """
        assert self._file is not None
        with self._lock:
            try:
                out = self._open_current()
                data = (line + "\n").encode()
                # One write(2) per record, as the buffered file's flush did: the record is
                # in the file before the caller's answer leaves. A short write (disk full
                # mid-record) is an error, like any other.
                if os.write(out, data) != len(data):
                    raise OSError("short write to the audit file")
            except OSError as exc:
                self._close()
                if not self._failing:
                    self._failing = True
                    log.error("audit file %s unwritable (%s); auditing to the log", self._file, exc)
                return False
            if self._failing:
                self._failing = False
                log.warning("audit file %s writable again", self._file)
            return True

    def _open_current(self) -> int:
        assert self._file is not None
        try:
            st = os.stat(self._file)
            same = self._out is not None and self._inode == (st.st_dev, st.st_ino)
        except FileNotFoundError:
            same = False
        if not same:
            self._close()
            fd = os.open(self._file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            self._out = fd
            st = os.fstat(fd)
            self._inode = (st.st_dev, st.st_ino)
        assert self._out is not None
        return self._out

    def _close(self) -> None:
        if self._out is not None:
            with contextlib.suppress(OSError):
                os.close(self._out)
        self._out = None


# (whole second, its formatted prefix): replaced as one tuple, so threads never
# see a second paired with another second's text.
_second: tuple[int, str] = (-1, "")


def _now() -> str:
    """UTC time with milliseconds; strftime runs once a second, not once a record."""
    global _second
    now = time.time()
    whole, prefix = _second
    if whole != int(now):
        whole = int(now)
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, prefix)
    return f"{prefix}.{int(now * 1000) % 1000:03d}Z"


_audit = AuditLog()


def install(audit: AuditLog) -> None:
    """Make *audit* the process-wide audit log (the daemon does this at start)."""
    global _audit
    _audit = audit


def audit(action: str, outcome: str = "ok", **fields: Any) -> dict[str, Any]:
    """Record *action* in the process-wide audit log (see :meth:`AuditLog.record`)."""
    return _audit.record(action, outcome, **fields)
