"""Garbage collection for a long-running event server: freeze what start-up built.

Everything the daemon builds while starting (modules, protobuf descriptors and
classes, config, servicers, the grpc servers) lives as long as the process, yet
CPython's full collection walks all of it again every time. A full collection
falls due every ~70,000 container allocations, and one card event's fan-out to
1000 WatchEvents subscribers allocates about that many (futures, handles, grpc
operations, each freed at once by reference counting): a py-spy profile of the
fan-out had ``gc_collect_main`` as its top native frame, a pause every
subscriber waits for. ``gc.freeze()`` once the daemon is ready moves the
start-up heap to the permanent generation, so a collection walks only what came
after; and a larger young generation makes collections rarer, not costlier
(each young object is still examined once). Cycles are still collected.
"""

from __future__ import annotations

import gc

# Young-generation threshold (CPython's default is 700): objects allocated between
# two young collections. The older generations keep their defaults.
YOUNG_THRESHOLD = 20_000


def freeze_startup_heap() -> None:
    """Collect once, then exclude every surviving object from future collections."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
