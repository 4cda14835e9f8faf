"""Permission rules for the files the daemon trusts, checked before it trusts them.

Like OpenSSH refusing a private key other users can read, hwgated refuses to
start (exit 2, naming the file) when a secret is exposed or a file that grants
access can be rewritten by someone else, and warns where a looser mode is a
plausible deployment choice. The rules (also in docs/config-schema.md):

- **Secrets** (``pin_file``, ``tls_key``): a regular file, owned by root or the
  daemon's user, with no access for others and not group-writable. Refused
  otherwise. Group-readable is allowed (``root:hwgate 0640``).
- **The config file** (it holds the policy): refused when world-writable or when
  its directory is world-writable without the sticky bit; a warning when
  group-writable or owned by someone other than root or the daemon's user.
- **An existing socket directory**: refused when world-writable without the
  sticky bit or owned by someone other than root or the daemon's user (either
  could replace the socket with their own); a warning when group-writable or
  world-writable with the sticky bit (``/tmp``: others may squat the name).
- **A bound socket** whose mode is wider than the configured ``mode`` is refused;
  a configured mode that lets every local user connect is a warning.

Everything here raises :class:`UnsafeFile` for a refusal; callers phrase it as a
ConfigError or ListenerError. Warnings go to this module's logger.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


class UnsafeFile(Exception):
    """A file's permissions or owner make it unsafe to trust; the message names it."""


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def check_secret_file(path: Path, what: str) -> None:
    """Refuse a PIN or private-key file others can read or change."""
    try:
        st = path.stat()
    except OSError as exc:
        raise UnsafeFile(f"{what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{what} {path} is not a regular file")
    if st.st_mode & (stat.S_IRWXO | stat.S_IWGRP):
        raise UnsafeFile(
            f"permissions {_mode(st)} for {what} {path} are too open: other users may not "
            "read it and only its owner may write it (chmod 0600 or 0640)"
        )
    if not _trusted_owner(st.st_uid):
        raise UnsafeFile(
            f"{what} {path} is owned by uid {st.st_uid}, not by root or the daemon's user"
        )


def check_config_file(path: Path) -> None:
    """Refuse a config (policy) file anyone could rewrite; warn about looser ones."""
    st = path.stat()
    if st.st_mode & stat.S_IWOTH:
        raise UnsafeFile(
            f"permissions {_mode(st)} for {path} are too open: any user could rewrite the "
            "policy (chmod o-w)"
        )
    parent = path.resolve().parent
    pst = parent.stat()
    if pst.st_mode & stat.S_IWOTH and not pst.st_mode & stat.S_ISVTX:
        raise UnsafeFile(
            f"directory {parent} of {path} is world-writable (mode {_mode(pst)}): "
            "any user could replace the config"
        )
    if st.st_mode & stat.S_IWGRP:
        log.warning(
            "%s is group-writable (mode %s): its group can change the policy", path, _mode(st)
        )
    if not _trusted_owner(st.st_uid):
        log.warning("%s is owned by uid %d, not by root or the daemon's user", path, st.st_uid)


def check_socket_dir(directory: Path) -> None:
    """Refuse an existing socket directory someone else could replace our socket in."""
    st = directory.stat()
    if not _trusted_owner(st.st_uid):
        raise UnsafeFile(
            f"socket directory {directory} is owned by uid {st.st_uid}, not by root or the "
            "daemon's user: its owner could replace the socket"
        )
    world_writable = bool(st.st_mode & stat.S_IWOTH)
    if world_writable and not st.st_mode & stat.S_ISVTX:
        raise UnsafeFile(
            f"socket directory {directory} is world-writable (mode {_mode(st)}): any user "
            "could replace the socket (chmod o-w, or use a directory of its own)"
        )
    if world_writable:
        log.warning(
            "socket directory %s is world-writable (sticky, mode %s): other users can take "
            "the socket name while the daemon is down; prefer a directory of its own",
            directory,
            _mode(st),
        )
    elif st.st_mode & stat.S_IWGRP:
        log.warning(
            "socket directory %s is group-writable (mode %s): its group could replace the socket",
            directory,
            _mode(st),
        )


def check_socket_mode(path: Path, configured: int, role: str | None) -> None:
    """After binding: the socket is no wider than configured; warn if everyone may connect."""
    actual = stat.S_IMODE(path.lstat().st_mode)
    if actual & ~configured:
        raise UnsafeFile(
            f"socket {path} has mode {actual:04o}, wider than the configured {configured:04o}"
        )
    if configured & stat.S_IWOTH:
        log.warning(
            "socket %s has mode %04o: every local user can connect and gets role %r",
            path,
            configured,
            role,
        )
