"""Pure logic behind the Transmit guard and the PIN limits: APDU classes, shared buckets."""

from __future__ import annotations

import tomllib
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwgated.auth.pinlimit import PinLimits, card_key
from hwgated.auth.policy import Policy
from hwgated.auth.ratelimit import TokenBucketLimiter
from hwgated.config import ConfigError, parse_config
from hwgated.errors import RateLimited
from hwgated.piv.apdu import CommandApdu
from hwgated.piv.apdu_class import READ_INS, ApduKind, classify
from hwgated.pivapp.identity import CardIdentity

SECURITY_INS = {
    0x20: ApduKind.VERIFY,
    0x24: ApduKind.CHANGE_REFERENCE_DATA,
    0x2C: ApduKind.RESET_RETRY_COUNTER,
    0x87: ApduKind.GENERAL_AUTHENTICATE,
    0x47: ApduKind.GENERATE_KEY_PAIR,
    0xDB: ApduKind.PUT_DATA,
}
ROOT = Path(__file__).resolve().parents[2]


@given(cla=st.integers(0, 0xFF), ins=st.sampled_from(sorted(SECURITY_INS)))
def test_security_ins_is_restricted_under_every_cla(cla: int, ins: int) -> None:
    command = CommandApdu(cla, ins, 0x00, 0x9A, b"\x7c\x02\x82\x00")
    kind = classify(command)
    assert kind is SECURITY_INS[ins] and kind.restricted


@given(
    cla=st.integers(0, 0xFF),
    ins=st.integers(0, 0xFF),
    p1=st.integers(0, 0xFF),
    data=st.binary(max_size=8),
)
def test_only_reading_ins_pass(cla: int, ins: int, p1: int, data: bytes) -> None:
    kind = classify(CommandApdu(cla, ins, p1, 0x80, data))
    status_query = ins in (0x20, 0x21) and p1 == 0 and not data
    assert (not kind.restricted) == (ins in READ_INS or status_query)


def test_chained_general_authenticate_and_odd_ins_are_named() -> None:
    assert classify(CommandApdu(0x10, 0x87, 0x11, 0x9A, b"\x7c")) is ApduKind.GENERAL_AUTHENTICATE
    assert classify(CommandApdu(0x00, 0x21, 0x00, 0x80, b"1")) is ApduKind.VERIFY
    assert classify(CommandApdu(0x00, 0x86, 0x00, 0x9A, b"\x7c")) is ApduKind.GENERAL_AUTHENTICATE
    # The empty VERIFY status query reads; P1=FF (log out) and a PIN do not.
    assert classify(CommandApdu(0x00, 0x20, 0x00, 0x80)) is ApduKind.READ
    assert classify(CommandApdu(0x00, 0x20, 0xFF, 0x80)) is ApduKind.VERIFY
    # A proprietary INS (here Yubico's RESET) is restricted without a name.
    assert classify(CommandApdu(0x00, 0xFB, 0x00, 0x00)) is ApduKind.OTHER


def test_acquire_all_takes_from_every_bucket_or_none() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(2, clock=lambda: now[0])
    limiter.acquire_all(("a", "card"))
    limiter.acquire_all(("b", "card"))
    with pytest.raises(RateLimited):
        limiter.acquire_all(("c", "card"))  # the card is spent
    limiter.acquire_all(("c", "other-card"))  # c lost nothing to the refusal
    limiter.acquire_all(("c", "third-card"))
    with pytest.raises(RateLimited):
        limiter.acquire_all(("c", "fourth-card"))  # now the caller is spent


def test_many_identities_share_one_cards_budget() -> None:
    limits = PinLimits(3, clock=lambda: 0.0)
    granted = 0
    for caller in range(10):
        try:
            limits.acquire(f"uid:{caller}", "card:guid:x")
            granted += 1
        except RateLimited:
            pass
    assert granted == 3


def test_card_key_prefers_guid_then_fascn_then_reader() -> None:
    guid = uuid.uuid4()
    assert card_key(CardIdentity(True, guid=guid, fascn_raw=b"\x01"), "R") == f"card:guid:{guid}"
    zero = CardIdentity(True, guid=uuid.UUID(int=0), fascn_raw=b"\xd0\x01")
    assert card_key(zero, "R") == "card:fascn:d001"
    assert card_key(CardIdentity(True), "R") == "card:reader:R"
    assert card_key(None, "R") == "card:reader:R"


def test_the_example_config_keeps_transmit_for_admin(tmp_path: Path) -> None:
    raw = tomllib.loads((ROOT / "systemd" / "hwgated.example.toml").read_text())
    raw["listen"] = [{"unix": str(tmp_path / "s.sock"), "role": "kiosk"}]
    raw["hsm"] = {}
    policy = Policy(parse_config(raw, source="example", base=tmp_path).policy)
    assert not policy.allows_method("kiosk", "/hwgate.v1.CardService/Transmit")
    assert policy.allows_method("kiosk", "/hwgate.v1.CardService/OpenSession")
    assert not policy.allows_transmit_security("kiosk")
    assert policy.allows_transmit_security("admin")


def test_testbed_config_keeps_transmit_for_admin() -> None:
    from hwgate_testbed.daemon_config import ROLE_ALLOW, TRANSMIT_SECURITY
    from hwgated.config import PolicyConfig, RoleConfig

    roles = {name: RoleConfig(tuple(allow)) for name, allow in ROLE_ALLOW.items()}
    policy = Policy(PolicyConfig(roles=roles, transmit_security=tuple(TRANSMIT_SECURITY)))
    assert not policy.allows_method("kiosk", "/hwgate.v1.CardService/Transmit")
    assert policy.allows_method("kiosk", "/hwgate.v1.CardService/WatchEvents")
    assert policy.allows_method("admin", "/hwgate.v1.CardService/Transmit")
    assert TRANSMIT_SECURITY == ["admin"]


def test_identity_rules_take_exactly_one_matcher(tmp_path: Path) -> None:
    base = {"listen": [{"unix": str(tmp_path / "s.sock"), "role": "kiosk"}]}
    roles = {"kiosk": {"allow": []}, "admin": {"allow": ["*"]}}

    def policy(**extra: object) -> dict[str, object]:
        return {**base, "policy": {"roles": roles, **extra}}

    ok = parse_config(policy(identity=[{"uid": 1000, "role": "admin"}]), base=tmp_path)
    assert ok.policy.identities[0].uid == 1000
    for bad in (
        {"uid": 1, "gid": 2, "role": "admin"},
        {"uid": -1, "role": "admin"},
        {"role": "admin"},
    ):
        with pytest.raises(ConfigError):
            parse_config(policy(identity=[bad]), base=tmp_path)
    with pytest.raises(ConfigError, match="not defined"):
        parse_config(policy(transmit_security=["nobody"]), base=tmp_path)
