"""Reference apps for the NIST SP 800-157 derived-credential flow on hwgate.

- :mod:`hwgate_apps.enrollment`: the enrollment server (HTTPS JSON, SQLite);
  verifies the card's proof of possession, derives activation codes and issues
  derived PIV Authentication certificates with the HSM's issuing CA, all
  through hwgated over mutual TLS with the ``enrollment`` role.
- :mod:`hwgate_apps.kiosk`: the web kiosk (one page, Server-Sent Events) that
  talks to the local hwgated over its Unix socket with the ``kiosk`` role.
- :mod:`hwgate_apps.phone`: a phone simulator that redeems the QR code.
- :mod:`hwgate_apps.stack` and :mod:`hwgate_apps.demo`: run them together on
  the test bed (``make kiosk``, ``make demo``).
"""
