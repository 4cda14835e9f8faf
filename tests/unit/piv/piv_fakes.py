"""A scripted card connection: expected command → canned response, in order."""

from __future__ import annotations


class ScriptedCard:
    """Plays back (expected_apdu_hex, response_hex) pairs; fails on any deviation."""

    def __init__(self, script: list[tuple[str, str]]) -> None:
        self.script = [(bytes.fromhex(c), bytes.fromhex(r)) for c, r in script]
        self.sent: list[bytes] = []

    def __call__(self, apdu: bytes) -> bytes:
        self.sent.append(bytes(apdu))
        assert self.script, f"unexpected APDU {apdu.hex()}"
        expected, response = self.script.pop(0)
        assert apdu == expected, f"sent {apdu.hex()}, expected {expected.hex()}"
        return response

    def done(self) -> bool:
        return not self.script
