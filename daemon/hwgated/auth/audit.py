"""The audit log: one structured record per security-relevant act.

Who (role, subject, listener), what (action), on what (reader, slot, key),
and the outcome (ok, or the error reason). Never a PIN, a secret or key
material: callers pass only the fields below, and values are stringified
short scalars. Records go to a JSON-lines file, or to the ``hwgated.audit``
logger (stderr, or journald under systemd).
"""

from __future__ import annotations

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


class AuditLog:
    """Writes audit records; thread-safe (HSM and card callbacks may log from threads)."""

    def __init__(self, file: Path | None = None) -> None:
        self._file = file
        self._lock = threading.Lock()
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
        entry.update(
            {
                k: v if isinstance(v, int | bool) else str(v)
                for k, v in fields.items()
                if v is not None
            }
        )
        line = json.dumps(entry, sort_keys=True)
        if self._file is None:
            log.info("%s", line, extra={"hwgate_audit": entry})
        else:
            with self._lock, self._file.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        return entry


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


_audit = AuditLog()


def install(audit: AuditLog) -> None:
    """Make *audit* the process-wide audit log (the daemon does this at start)."""
    global _audit
    _audit = audit


def audit(action: str, outcome: str = "ok", **fields: Any) -> dict[str, Any]:
    return _audit.record(action, outcome, **fields)
