"""Garbage collection for a long-running event server: freeze what start-up built.

Everything the daemon builds while starting (modules, protobuf descriptors and
classes, config, servicers, the grpc servers) lives as long as the process, yet
CPython's full collection walks all of it again every time. Collections are
triggered by container allocations (a full one after ~70,000 with the default
thresholds), and a card event's fan-out allocates several per subscriber
(futures, handles, grpc operations, each freed at once by reference counting):
a py-spy --native profile of the fan-out to 1000 WatchEvents subscribers had
``gc_collect_main`` as its top self frame, pauses every subscriber waits for.
``gc.freeze()`` once the daemon is ready moves the start-up heap to the
permanent generation, so a collection walks only what came after; and a larger
young generation makes collections rarer, not costlier (each young object is
still examined once). Cycles are still collected.
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
