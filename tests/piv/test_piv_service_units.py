"""The pure parts behind PivService: rate limiter, origins, schemes, the PIN buffer."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from hwgated import errors
from hwgated.auth.ratelimit import TokenBucketLimiter
from hwgated.piv.commands import PinFormatError
from hwgated.piv.origin import OriginError, check_origin
from hwgated.piv.pinbuffer import PinBuffer
from hwgated.piv.schemes import SCHEMES
from hwgated.piv.slots import Algorithm
from hwgated.pivapp.schemes import card_block, scheme_named


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_bursts_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(6, clock=clock)  # one token every 10 s
    for _ in range(6):
        limiter.acquire("kiosk")
    with pytest.raises(errors.RateLimited) as caught:
        limiter.acquire("kiosk")
    assert caught.value.metadata == {"retry_after_seconds": "10"}
    limiter.acquire("other")  # buckets are per identity
    clock.now += 9.0
    with pytest.raises(errors.RateLimited) as caught:
        limiter.acquire("kiosk")
    assert caught.value.metadata["retry_after_seconds"] == "1"
    clock.now += 1.0
    limiter.acquire("kiosk")


def test_token_bucket_disabled_and_pruned() -> None:
    clock = FakeClock()
    unlimited = TokenBucketLimiter(0, clock=clock)
    for _ in range(1000):
        unlimited.acquire("kiosk")
    limiter = TokenBucketLimiter(60, clock=clock)
    for i in range(300):
        limiter.acquire(f"id{i}")
        clock.now += 2.0  # each bucket is full again a minute after its use
    assert len(limiter) < 300


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.org",
        "https://enroll.example.gov:8443",
        "http://127.0.0.1:8080",
        "https://[::1]:8443",
        "https://xn--bcher-kva.example",
    ],
)
def test_serialized_origins_pass(origin: str) -> None:
    assert check_origin(origin) == origin


@pytest.mark.parametrize(
    "origin",
    [
        "",
        "example.org",
        "https://example.org/",
        "https://example.org/login",
        "HTTPS://a.org",
        "https://A.org",
        "https://example.org:443",
        "http://a.org:80",
        "https://a:0",
        "https://a:08443",
        "https://a:70000",
        "https://a:",
        "https://user@a.org",
        "https://a.org?x=1",
        "https://a.org#f",
        "https://bücher.example",
        "https://-a.org",
        "https://a.org\n",
    ],
)
def test_non_origins_are_refused(origin: str) -> None:
    with pytest.raises(OriginError):
        check_origin(origin)


def test_scheme_names() -> None:
    assert scheme_named("ECDSA_SHA384").digest_size == 48
    with pytest.raises(errors.InvalidArgument):
        scheme_named("UNSPECIFIED")
    with pytest.raises(errors.AlgorithmMismatch):
        scheme_named("HMAC_SHA256")


def test_card_blocks_per_fips_186_and_rfc_8017() -> None:
    sha384 = hashlib.sha384(b"m").digest()
    sha256 = hashlib.sha256(b"m").digest()
    assert card_block(SCHEMES["ECDSA_SHA384"], Algorithm.ECCP256, sha384) == sha384[:32]
    assert card_block(SCHEMES["ECDSA_SHA256"], Algorithm.ECCP384, sha256) == bytes(16) + sha256
    block = card_block(SCHEMES["RSA_PKCS1_SHA256"], Algorithm.RSA2048, sha256)
    assert len(block) == 256 and block.startswith(b"\x00\x01\xff") and block.endswith(sha256)
    assert len(card_block(SCHEMES["RSA_PSS_SHA256"], Algorithm.RSA2048, sha256)) == 256
    with pytest.raises(errors.AlgorithmMismatch):
        card_block(SCHEMES["RSA_PKCS1_SHA256"], Algorithm.ECCP256, sha256)
    with pytest.raises(errors.AlgorithmMismatch):
        card_block(SCHEMES["ECDSA_SHA256"], Algorithm.RSA2048, sha256)
    with pytest.raises(errors.AlgorithmMismatch):  # 64+64+2 bytes do not fit 1024 bits
        card_block(SCHEMES["RSA_PSS_SHA512"], Algorithm.RSA1024, hashlib.sha512().digest())
    with pytest.raises(errors.InvalidDigest) as caught:
        card_block(SCHEMES["ECDSA_SHA256"], Algorithm.ECCP256, sha384)
    assert caught.value.metadata == {"expected_length": "32"}
    assert ec.SECP256R1().key_size == Algorithm.ECCP256.key_bits


def test_pin_buffer_is_wiped_once_by_its_owner() -> None:
    pin = PinBuffer(b"123456")
    assert "123456" not in repr(pin) and "123456" not in str(pin)
    pin.check_format()
    claimed = pin.claim()
    assert claimed == bytearray(b"123456") and pin.claim() is None
    pin.abandon()  # the worker holds it: the servicer must not wipe under it
    assert claimed == bytearray(b"123456") and not pin.wiped
    pin.wipe()
    assert claimed == bytearray(6) and pin.wiped


def test_abandoned_pin_is_wiped_and_never_claimed() -> None:
    pin = PinBuffer(bytearray(b"87654321"))
    pin.abandon()
    assert pin.wiped and pin.claim() is None


@pytest.mark.parametrize("raw", [b"", b"12345", b"123456789", b"12 456", b"\xff" * 6])
def test_pin_format(raw: bytes) -> None:
    with pytest.raises(PinFormatError) as caught:
        PinBuffer(raw).check_format()
    assert raw.decode("latin-1") not in str(caught.value) or not raw
