"""The drill's shared pieces: the repository root on sys.path (for ``bench``), one
hwgated with cards and HSM for the whole fault drill, and its measured recoveries."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
