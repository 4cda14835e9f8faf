"""Pure logic of the RFC 8628 sign-in: user codes, polling discipline (both sides),
the kiosk's reading of a typed or scanned code, the approval challenge."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwgate_apps.enrollment import polling, user_code
from hwgate_apps.enrollment.device_proof import approval_challenge
from hwgate_apps.kiosk.device import code_from_input
from hwgate_apps.phone import device_flow
from hwgate_apps.web import ApiError

codes = st.text(alphabet=user_code.ALPHABET, min_size=user_code.LENGTH, max_size=user_code.LENGTH)


def test_alphabet_is_rfc8628_base20() -> None:
    # §6.1: case-insensitive A-Z, no digits, no vowels -> "BCDFGHJKLMNPQRSTVWXZ".
    assert user_code.ALPHABET == "BCDFGHJKLMNPQRSTVWXZ"
    assert len(set(user_code.ALPHABET)) == 20
    # §5.1's worked example: 8 characters of base 20 is roughly 34.5 bits.
    assert 34 < user_code.LENGTH * math.log2(len(user_code.ALPHABET)) < 35


def test_generated_codes_use_the_alphabet_and_vary() -> None:
    drawn = {user_code.generate() for _ in range(200)}
    assert all(len(c) == 8 and set(c) <= set(user_code.ALPHABET) for c in drawn)
    assert len(drawn) == 200  # 20^8 codes: a repeat here would mean a broken generator
    assert "".join(drawn).count("B") < 200 * 8 // 5  # no gross bias toward a letter


@given(codes)
def test_display_then_normalize_is_the_code(code: str) -> None:
    shown = user_code.display(code)
    assert len(shown) == 9 and shown[4] == "-"
    assert user_code.normalize(shown) == code
    assert user_code.normalize(shown.lower()) == code
    assert user_code.normalize(f"  {code[:2]} {code[2:5]}.{code[5:]} ") == code


@given(st.text(max_size=80))
def test_normalize_never_raises_and_returns_only_codes(text: str) -> None:
    result = user_code.normalize(text)
    assert result is None or (len(result) == 8 and set(result) <= set(user_code.ALPHABET))
    if result is not None:
        assert user_code.normalize(result) == result


@pytest.mark.parametrize("text", ["WDJB-MJH", "WDJB-MJHTX", "WDJB-MJH0", "AEIO-UBCD", "WDJB-MJHß",
                                  "\uff37DJB-MJHT", "", "-" * 70 + "WDJBMJHT"])  # fmt: skip
def test_normalize_refuses_what_is_not_a_code(text: str) -> None:
    assert user_code.normalize(text) is None


def test_mac_input_is_domain_separated_from_activation_codes() -> None:
    from hwgate_apps.enrollment import activation

    assert user_code.mac_input("WDJBMJHT") != activation.mac_input("WDJBMJHT", 1)
    assert user_code.mac_input("WDJBMJHT").endswith(b"WDJBMJHT")


@given(st.floats(0, 1e9), st.floats(0, 1e4), st.integers(1, 3600))
def test_server_never_slows_down_a_client_that_waited(
    last: float, extra: float, interval: int
) -> None:
    assert not polling.too_fast(last, last + interval + extra, interval)
    assert not polling.too_fast(None, last, interval)  # the first poll


@given(st.floats(0, 1e9), st.integers(1, 3600), st.floats(0, 1))
def test_server_slows_down_a_client_that_did_not_wait(
    last: float, interval: int, frac: float
) -> None:
    early = (interval - polling.TOLERANCE) * frac * 0.99
    assert polling.too_fast(last, last + early, interval)
    assert polling.slowed(interval) == interval + 5


@given(st.integers(1, 3600), st.lists(st.sampled_from(["authorization_pending", "slow_down"])))
def test_client_interval_grows_by_five_per_slow_down(start: int, answers: list[str]) -> None:
    interval = start
    for answer in answers:
        wait = device_flow.next_interval(interval, answer)
        assert wait is not None and wait >= interval
        interval = wait
    assert interval == start + 5 * answers.count("slow_down")


@pytest.mark.parametrize("error", ["access_denied", "expired_token", "invalid_grant", ""])
def test_client_stops_on_any_other_answer(error: str) -> None:
    assert device_flow.next_interval(5, error) is None


Answer = tuple[int, dict[str, Any]]


def _scripted_poll(
    monkeypatch: pytest.MonkeyPatch, answers: list[Answer], expires_in: int = 600
) -> tuple[list[float], list[dict[str, str]], Any]:
    sleeps: list[float] = []
    sent: list[dict[str, str]] = []
    now = [0.0]

    def post(url: str, form: dict[str, str], tls_ca: str | None) -> tuple[int, dict[str, Any]]:
        assert url == "https://rp.example/token"
        sent.append(dict(form))
        return answers.pop(0)

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(device_flow, "_post", post)
    code = device_flow.DeviceCode("dc", "WDJB-MJHT", "https://rp.example/device", "", expires_in, 5)

    def run() -> str:
        return device_flow.poll("https://rp.example", code, None, sleep=sleep, clock=lambda: now[0])

    return sleeps, sent, run


def test_client_polls_as_rfc8628_says(monkeypatch: pytest.MonkeyPatch) -> None:
    pending = (400, {"error": "authorization_pending"})
    slow = (400, {"error": "slow_down"})
    answers = [pending, slow, pending, slow, (200, {"access_token": "T", "token_type": "Bearer"})]
    sleeps, sent, run = _scripted_poll(monkeypatch, answers)
    assert run() == "T"
    assert sleeps == [5, 5, 10, 10, 15]  # waits before every request, +5 per slow_down
    assert sent[0] == {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                       "device_code": "dc", "client_id": "hwgate-phone"}  # fmt: skip


def test_client_stops_on_denial_and_at_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, run = _scripted_poll(monkeypatch, [(400, {"error": "access_denied"})])
    with pytest.raises(device_flow.DeviceFlowError) as err:
        run()
    assert err.value.error == "access_denied"
    pending = (400, {"error": "authorization_pending"})
    sleeps, _, run = _scripted_poll(monkeypatch, [pending] * 10, expires_in=12)
    with pytest.raises(device_flow.DeviceFlowError) as err:
        run()
    assert err.value.error == "expired_token" and sleeps == [5, 5, 5]  # no request after expiry


ORIGIN = "https://127.0.0.1:8443"


def test_kiosk_reads_a_bare_code_or_its_own_link() -> None:
    assert code_from_input(" wdjb-mjht ", ORIGIN) == "wdjb-mjht"
    assert code_from_input(f"{ORIGIN}/device?user_code=WDJB-MJHT", ORIGIN) == "WDJB-MJHT"


@pytest.mark.parametrize("link", [
    "https://evil.example/device?user_code=WDJB-MJHT",
    "https://127.0.0.1:9443/device?user_code=WDJB-MJHT",
    "http://127.0.0.1:8443/device?user_code=WDJB-MJHT",
    "https://127.0.0.1:8443@evil.example/device?user_code=WDJB-MJHT",
])  # fmt: skip
def test_kiosk_refuses_a_link_to_another_origin(link: str) -> None:
    with pytest.raises(ApiError) as err:
        code_from_input(link, ORIGIN)
    assert (err.value.status, err.value.error) == (403, "wrong_origin")


@given(st.uuids(), st.binary(min_size=32, max_size=64))
def test_approval_challenge_names_the_device_authorization(daid: Any, nonce: bytes) -> None:
    challenge = approval_challenge(str(daid), nonce)
    assert str(daid).encode() in challenge and challenge.endswith(nonce)
    other = approval_challenge(str(daid)[:-1] + ("0" if str(daid)[-1] != "0" else "1"), nonce)
    assert other != challenge


def test_same_origin_is_scheme_host_port() -> None:
    assert device_flow.same_origin("https://a.example:8443/x", "https://a.example:8443")
    assert not device_flow.same_origin("https://a.example:8443", "https://a.example:9443")
    assert not device_flow.same_origin("https://a.example", "https://b.example")
