"""The systemd unit pins glibc's mmap threshold (issue 25).

Without it, glibc's dynamic threshold keeps the buffers of a burst of large requests
in the heap after they are freed; bench/rss_probe.py --big measured 11-20 MB held by
malloc after each storm round at the default and 2 MB with the variable set.
"""

from __future__ import annotations

from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "hwgated.service"


def environment(unit: Path) -> dict[str, str]:
    """The unit's Environment= assignments (one NAME=VALUE per line, as the unit writes them)."""
    out = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            name, _, value = line.removeprefix("Environment=").partition("=")
            out[name] = value
    return out


def test_unit_fixes_the_mmap_threshold() -> None:
    value = environment(UNIT).get("MALLOC_MMAP_THRESHOLD_")
    assert value is not None, "hwgated.service must set MALLOC_MMAP_THRESHOLD_"
    # glibc's own default start value: large gRPC buffers stay mmapped, small ones do not.
    assert int(value) == 128 * 1024
