"""Small file-writing helpers shared by the provisioning modules."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: str | bytes) -> None:
    """Write a secret (PIN, private key) so that it is never readable by others,
    not even for an instant: the file is created 0600 before any byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        os.write(fd, raw)
    finally:
        os.close(fd)


def write_trusted(path: Path, text: str) -> None:
    """Write a file hwgated trusts (its config): never group- or world-writable,
    whatever the umask, since the daemon warns about the one and refuses the other."""
    path.write_text(text)
    path.chmod(path.stat().st_mode & ~0o022)
