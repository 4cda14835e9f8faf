"""The worker's start-up record, apart from the worker so the wire schema can name it
without importing python-pkcs11 into the daemon."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerInit:
    """What a worker needs besides the PIN (which comes in its own frame)."""

    module: str
    token_label: str | None
    token_serial: str | None
    env: dict[str, str] = field(default_factory=dict)
    unset_env: tuple[str, ...] = ()  # e.g. the pin_env variable, inherited from the daemon
