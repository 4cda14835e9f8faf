"""One ``[[hsm.token]]`` table as a dataclass, and reading its PIN.

The config loader builds ``TokenConfig`` (paths already resolved against the
config file's directory). The PIN is read by the parent process right before a
worker starts, so a rotated PIN file is picked up on the next restart; it lives
in a bytearray that the caller wipes, and it reaches the worker only over the
worker's pipe, never through argv or the environment.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from hwgated.hsm.errors import HsmLoginFailed, InvalidArgument

CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"
MAX_WORKERS = 64
MIN_OP_TIMEOUT = 0.1
_TEXT_KEYS = ("name", "module", "token_label", "token_serial",
              "pin_file", "pin_env", "pin_credential")  # fmt: skip
_ONE_OF_TOKEN = ("token_label", "token_serial")
_ONE_OF_PIN = ("pin_file", "pin_env", "pin_credential")


class TokenConfigError(InvalidArgument):
    """A token table that ``token_problem`` refuses (hwgated exits 2 on it, no traceback)."""


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
    # Seconds a key's description (its label, for authorization) is trusted before
    # the token is asked again: bounds how long a key relabelled or deleted outside
    # the daemon is authorized on stale data. 0 = ask every time.
    describe_ttl: float = 30.0
    env: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise InvalidArgument naming the first inconsistent key (see token_problem)."""
        problem = token_problem(self)
        if problem is not None:
            key, message = problem
            where = f"hsm.token {self.name!r}" + (f": {key}" if key else "")
            raise TokenConfigError(f"{where}: {message}")

    def describe_pin_source(self) -> str:
        """Where the PIN comes from, for log lines (never the PIN)."""
        if self.pin_file is not None:
            return f"pin_file {self.pin_file}"
        if self.pin_env is not None:
            return f"pin_env {self.pin_env}"
        return f"pin_credential {self.pin_credential}"


def token_problem(token: TokenConfig) -> tuple[str | None, str] | None:
    """The first problem of one token table as (key, message), or None when it is sound.

    The one validator of ``[[hsm.token]]``: the config loader reports its answer
    as ``FILE: hsm.token[N].KEY: message`` (exit 2) and ``HsmPool`` refuses the
    same configs, so a table cannot pass one and fail the other. A key that is
    set counts as set even when empty (``pin_env = ""``); an empty value is its
    own error, naming the key, before the exactly-one-of rules.
    """
    for key in _TEXT_KEYS:
        value = getattr(token, key)
        if value is None:
            continue
        if not value.strip():
            return key, "must not be empty"
        if "\x00" in value:
            return key, "may not contain a NUL byte"
    if token.pin_credential is not None and "/" in token.pin_credential:
        return "pin_credential", "a credential name, not a path"
    for name, value in token.env.items():
        if not name or "=" in name or "\x00" in name:
            return "env", f"not a variable name: {name!r}"
        if "\x00" in value:
            return "env", f"{name}: may not contain a NUL byte"
    for group in (_ONE_OF_TOKEN, _ONE_OF_PIN):
        if sum(getattr(token, key) is not None for key in group) != 1:
            return None, "set exactly one of " + _or(group)
    if not 1 <= token.workers <= MAX_WORKERS:
        return "workers", f"must be 1..{MAX_WORKERS}"
    if not (math.isfinite(token.op_timeout) and token.op_timeout >= MIN_OP_TIMEOUT):
        return "op_timeout", f"must be a finite number >= {MIN_OP_TIMEOUT}"
    if not (math.isfinite(token.describe_ttl) and token.describe_ttl >= 0):
        return "describe_ttl", "must be a finite number >= 0"
    return None


def _or(keys: tuple[str, ...]) -> str:
    quoted = [f"'{k}'" for k in keys]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


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
