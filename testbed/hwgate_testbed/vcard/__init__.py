"""A virtual NIST SP 800-73-4 PIV card served to pcscd through vpcd.

``provision_card`` makes a card profile (keys, certificates from the PIV test
CA of ``ensure_piv_ca``), ``PivApplet`` plays it APDU by APDU, ``run_card``
connects it to a vpcd reader, and ``python -m hwgate_testbed.vcard`` does the
last two for a profile directory.
"""

from .applet import PivApplet
from .atr import ATR
from .piv_ca import PivCa, ensure_piv_ca
from .profile import CardProfile, Slot, SlotCredential
from .provision import provision_card
from .vpcd import run_card

__all__ = [
    "ATR",
    "CardProfile",
    "PivApplet",
    "PivCa",
    "Slot",
    "SlotCredential",
    "ensure_piv_ca",
    "provision_card",
    "run_card",
]
