"""The web kiosk: one page, a localhost backend, card events by Server-Sent Events.

The backend is the only part that talks to hwgated (Unix socket, ``kiosk``
role) and to the enrollment server; the browser only sees screens. The PIN
passes through the backend once, into VerifyPin, and is never stored or
logged.
"""
