"""SIGHUP: re-read the config file and apply what can change without a restart.

Live: the policy (roles, identities, key and reader rules) and the log level.
The new file is validated as a whole first; if it is invalid, or its policy no
longer defines a role a running listener hands out, nothing changes and the
old policy stays. Everything else (listeners, tokens, PC/SC settings, limits,
audit, metrics, message size) is bound into running objects: a change there is
logged as needing a restart, and the running values stay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from hwgated.auth.policy import Policy, PolicyHolder
from hwgated.config import Config, ConfigError, load_config
from hwgated.logsetup import effective_level

log = logging.getLogger(__name__)

# Config parts that take effect only at start: (attribute of Config, what to call it).
_RESTART_ONLY = (
    ("listeners", "[[listen]]"),
    ("tokens", "[[hsm.token]]"),
    ("pcsc", "[pcsc]"),
    ("audit", "[audit]"),
    ("limits", "[limits]"),
)
_DAEMON_RESTART_ONLY = ("max_message_bytes", "metrics", "log_target")


@dataclass
class ReloadOutcome:
    """What a reload did: ``config`` is the one now in force."""

    applied: bool
    config: Config
    error: str | None = None
    needs_restart: list[str] = field(default_factory=list)


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """Names of the changed settings that a running daemon cannot take over."""
    changed = [name for attr, name in _RESTART_ONLY if getattr(old, attr) != getattr(new, attr)]
    changed += [
        f"daemon.{key}"
        for key in _DAEMON_RESTART_ONLY
        if getattr(old.daemon, key) != getattr(new.daemon, key)
    ]
    return changed


def _check_running_roles(running: Config, new: Config) -> None:
    """The listeners keep running as they are: their roles must still exist."""
    if not new.policy.roles:
        return
    for listener in running.listeners:
        if listener.role and listener.role not in new.policy.roles:
            raise ConfigError(
                f"{new.path}: listen ({listener.target}): role {listener.role!r} of the running "
                "listener is not defined in the new [policy.roles]"
            )


def reload_config(
    path: Path, running: Config, policy: PolicyHolder, *, log_level_override: str | None = None
) -> ReloadOutcome:
    """Load *path*; on success swap the policy and return the merged config in force.

    *log_level_override* is ``hwgated --log-level``: it stays in force over the file's
    ``log_level`` (the caller applies the level; this only says which one)."""
    try:
        new = load_config(path)
        _check_running_roles(running, new)
        replacement = Policy(new.policy)
    except ConfigError as exc:
        log.error("reload rejected, keeping the running config: %s", exc)
        return ReloadOutcome(False, running, error=str(exc))
    policy.replace(replacement)
    needs_restart = restart_only_changes(running, new)
    for name in needs_restart:
        log.warning("reload: %s changed; it takes effect only after a restart", name)
    # Keep what is bound into running objects; take the live parts from the new file.
    daemon = replace(
        running.daemon, log_level=new.daemon.log_level, grace_period=new.daemon.grace_period
    )
    merged = replace(running, daemon=daemon, policy=new.policy)
    level = effective_level(log_level_override, new.daemon.log_level)
    source = "--log-level" if log_level_override else "log_level"
    if log_level_override and log_level_override != new.daemon.log_level:
        source += f"; the file's {new.daemon.log_level!r} is overridden"
    log.info("reloaded %s: policy (%d roles), log level %s (%s)", path, len(new.policy.roles),
             level, source)  # fmt: skip
    return ReloadOutcome(True, merged, needs_restart=needs_restart)
