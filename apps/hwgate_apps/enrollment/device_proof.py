"""What the card signs to approve one device sign-in.

The kiosk asks the card for ``PivService.Authenticate(origin, challenge)``, the
same origin-bound proof of possession as the QR enrollment (see :mod:`.proof`),
with a challenge that names the device authorization it approves::

    challenge = DOMAIN || device_authorization_id || 0x00 || nonce

The nonce is the server's (32 random bytes, issued when the kiosk claimed the
user code, valid for that claim only). The server rebuilds the challenge from
its own record and verifies against its own origin, so a proof is good for one
server, one device authorization and one claim: it cannot approve another
phone's request, nor be replayed on another relying party. Both sides build
the bytes here, so the kiosk signs exactly what the server will check.
"""

from __future__ import annotations

DOMAIN = b"hwgate-apps/device-approval/v1\x00"
NONCE_BYTES = 32


def approval_challenge(device_authorization_id: str, nonce: bytes) -> bytes:
    """The challenge bytes for approving *device_authorization_id* with *nonce*."""
    if len(nonce) < NONCE_BYTES:
        raise ValueError(f"the nonce must be at least {NONCE_BYTES} bytes")
    return DOMAIN + device_authorization_id.encode() + b"\x00" + nonce
