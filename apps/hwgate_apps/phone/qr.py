"""Decode a QR code from an image with zbarimg (Debian ``zbar-tools``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


class QrError(Exception):
    """No QR code could be read from the image."""


def decode_png(path: Path) -> str:
    """The text of the single QR code in *path*."""
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        raise QrError("zbarimg not found (apt-get install zbar-tools)")
    result = subprocess.run(
        [zbarimg, "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(path)],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or len(lines) != 1:
        raise QrError(f"expected one QR code in {path}, zbarimg said: {result.stderr.strip()}")
    return lines[0]
