"""One ``[[hsm.token]]`` table as a dataclass, and reading its PIN.

The config loader builds ``TokenConfig`` (paths already resolved against the
config file's directory). The PIN is read by the parent process right before a
worker starts, so a rotated PIN file is picked up on the next restart; it lives
in a bytearray that the caller wipes, and it reaches the worker only over the
worker's pipe, never through argv or the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hwgated.hsm.errors import HsmLoginFailed, InvalidArgument

CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"


@dataclass(frozen=True)
class TokenConfig:
    """One token the daemon serves. Exactly one of token_label/token_serial and one
    PIN source must be set (``validate`` checks)."""

    name: str
    module: str
    token_label: str | None = None
    token_serial: str | None = None
    pin_file: str | None = None
    pin_env: str | None = None
    pin_credential: str | None = None
    workers: int = 2
    op_timeout: float = 10.0
    env: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise InvalidArgument naming the first inconsistent key."""
        if (self.token_label is None) == (self.token_serial is None):
            raise InvalidArgument(f"hsm.token {self.name!r}: set one of token_label, token_serial")
        sources = [s for s in (self.pin_file, self.pin_env, self.pin_credential) if s is not None]
        if len(sources) != 1:
            raise InvalidArgument(
                f"hsm.token {self.name!r}: set one of pin_file, pin_env, pin_credential"
            )
        if not 1 <= self.workers <= 64:
            raise InvalidArgument(f"hsm.token {self.name!r}: workers must be 1..64")
        if not self.op_timeout > 0:
            raise InvalidArgument(f"hsm.token {self.name!r}: op_timeout must be > 0")

    def describe_pin_source(self) -> str:
        """Where the PIN comes from, for log lines (never the PIN)."""
        if self.pin_file is not None:
            return f"pin_file {self.pin_file}"
        if self.pin_env is not None:
            return f"pin_env {self.pin_env}"
        return f"pin_credential {self.pin_credential}"


def read_pin(config: TokenConfig) -> bytearray:
    """Return the user PIN as a bytearray (trailing newline stripped); caller wipes it.

    Raises HsmLoginFailed when the source is missing or empty: without a PIN the
    token cannot be used, which is the same condition for the daemon's health.
    """
    if config.pin_env is not None:
        value = os.environ.get(config.pin_env)
        if not value:
            raise HsmLoginFailed(f"PIN variable {config.pin_env} is unset or empty")
        pin = bytearray(value.encode())
        return _strip(pin)
    if config.pin_file is not None:
        path = Path(config.pin_file)
    else:
        creds = os.environ.get(CREDENTIALS_DIRECTORY)
        if not creds:
            raise HsmLoginFailed(f"${CREDENTIALS_DIRECTORY} is not set (pin_credential)")
        path = Path(creds) / str(config.pin_credential)
    return _strip(_read_file(path))


def _read_file(path: Path) -> bytearray:
    try:
        with path.open("rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            buf = bytearray(max(size, 1) + 1)
            n = f.readinto(buf) or 0
    except OSError as exc:
        raise HsmLoginFailed(f"cannot read PIN file {path}: {exc.strerror}") from None
    del buf[n:]
    return buf


def _strip(pin: bytearray) -> bytearray:
    while pin and pin[-1:] in (b"\n", b"\r"):
        pin[-1] = 0
        del pin[-1]
    if not pin:
        raise HsmLoginFailed("PIN source is empty")
    return pin
