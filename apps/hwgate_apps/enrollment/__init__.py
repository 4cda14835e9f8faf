"""The enrollment server: proof of possession in, derived PIV credential out.

Framework: Starlette on uvicorn. It is small (routing, JSON, background-free
request handling), typed, actively maintained, and runs plain ``def``
endpoints in a thread pool, which suits the blocking hwgate client (its
``hsm_key`` is a synchronous ``cryptography`` private key). uvicorn serves
HTTPS directly from a certificate file, so no reverse proxy is needed for the
reference setup. State lives in SQLite (standard library) by default: one
file, atomic single-use updates with ``UPDATE ... WHERE``; or in PostgreSQL
(psycopg 3), which several server processes share (:mod:`.db`, schema in
:mod:`.migrations`).

Kiosks and administrators prove who they are with TLS client certificates
(:mod:`.transport`, :mod:`.peers`); the phone redeems its activation code
without one.

The server talks to hwgated over mutual TLS with the ``enrollment`` role
only: HMAC on ``hmac-key`` for activation codes, ``issuing-ca`` for
certificates, RewrapForPeer with ``escrow-kek`` for key recovery (the
cardholder's escrowed 9D key re-wrapped for the phone, :mod:`.smime_service`).
It never sees a PIN or a card key.

Before the QR step a phone may sign in with the OAuth 2.0 device authorization
grant (RFC 8628, :mod:`.device_service`): ``POST /device_authorization`` and
``POST /token`` for the phone, ``GET /device`` where people are sent, and
``POST /device/claim|approve|deny`` for the kiosk, where the cardholder types
the phone's code and approves with the card.
"""
