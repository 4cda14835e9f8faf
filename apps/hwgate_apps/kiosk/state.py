"""What the kiosk page shows, and the fan-out of its changes to SSE subscribers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# Screens, in the order of the flow.
INSERT, PIN, READY, WORKING, QR, BLOCKED, ERROR = (
    "insert", "pin", "ready", "working", "qr", "blocked", "error",
)  # fmt: skip
# Device sign-in (RFC 8628): type the phone's code, insert the card, PIN, approve or deny.
CODE, DEVICE_INSERT, APPROVE = "code", "device_insert", "approve"


@dataclass
class Screen:
    """The page's whole state; every change is sent to the browser as one JSON object."""

    screen: str = INSERT
    name: str = ""
    reader: str = ""
    retries_left: int | None = None
    last_attempt: bool = False
    puk_last_attempt: bool = False  # the card reported one PUK try left
    puk_blocked: bool = False  # no unblock possible any more
    message: str = ""
    qr_svg: str = ""
    qr_payload: str = ""
    code: str = ""
    expires_at: float = 0.0
    # The device asking to sign in (client, name, user code, when): shown until decided.
    device: dict[str, Any] = field(default_factory=dict)
    version: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


class Broadcaster:
    """Holds the current Screen and pushes each new one to every subscriber queue."""

    def __init__(self) -> None:
        self.current = Screen()
        self._queues: set[asyncio.Queue[Screen]] = set()

    def publish(self, **changes: Any) -> Screen:
        """Replace the screen (fields not given are reset) and notify subscribers."""
        self.current = Screen(version=self.current.version + 1, **changes)
        for queue in self._queues:
            queue.put_nowait(self.current)
        return self.current

    def update(self, **changes: Any) -> Screen:
        """Change some fields of the current screen and notify subscribers."""
        fields = dataclasses.asdict(self.current)
        fields.update(changes)
        fields.pop("version")
        return self.publish(**fields)

    def subscribe(self) -> asyncio.Queue[Screen]:
        queue: asyncio.Queue[Screen] = asyncio.Queue()
        queue.put_nowait(self.current)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Screen]) -> None:
        self._queues.discard(queue)
