"""The virtual card and the daemon implement BER-TLV and FASC-N separately; check one
against the other.

The card (hwgate_testbed.vcard.ber / .fascn) exists to test the daemon's parsers
(hwgated.piv.tlv / .fascn / .objects). Had it been built from them, a bug in one
would be a bug in both and every test would still pass. These tests keep the two
apart (the test bed must not import hwgated at all) and make them agree: the same
bytes from both encoders, the same verdict from both decoders on arbitrary input.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

import hwgate_testbed
from hwgate_testbed.vcard import CardProfile, PivCa, Slot, ber, ensure_piv_ca, provision_card
from hwgate_testbed.vcard import fascn as card_fascn
from hwgate_testbed.vcard.objects import (
    CERT_TAGS,
    PIV_AID,
    TAG_CHUID,
    TAG_DISCOVERY,
    application_property_template,
    build_objects,
)
from hwgated.piv import fascn as daemon_fascn
from hwgated.piv.errors import PivParseError
from hwgated.piv.objects import (
    ApplicationPropertyTemplate,
    CertificateContainer,
    Chuid,
    Discovery,
    PinUsage,
)
from hwgated.piv.tlv import Tlv, TlvError

TESTBED_PACKAGE = Path(hwgate_testbed.__file__).parent

# -- independence ---------------------------------------------------------------------


def test_testbed_source_has_no_hwgated_import() -> None:
    """No module of the test bed (vcard, pytest plugin, config writer, CLI) imports hwgated."""
    offenders = []
    for path in sorted(TESTBED_PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(TESTBED_PACKAGE)}:{node.lineno} {name}"
                for name in names
                if name == "hwgated" or name.startswith("hwgated.")
            ]
    assert offenders == []


def test_card_works_with_hwgated_unimportable(tmp_path: Path) -> None:
    """Import every test bed module and serve a whole card with hwgated blocked."""
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        from pathlib import Path

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "hwgated" or name.startswith("hwgated."):
                    raise ImportError("the test bed must not import " + name)
                return None

        sys.meta_path.insert(0, Block())
        import hwgate_testbed
        for mod in pkgutil.walk_packages(hwgate_testbed.__path__, "hwgate_testbed."):
            if not mod.name.endswith("__main__"):
                importlib.import_module(mod.name)
        from hwgate_testbed.vcard import PivApplet, ensure_piv_ca, provision_card

        root = Path(sys.argv[1])
        card = PivApplet(provision_card(root / "card", "Ivy", "ecc", ensure_piv_ca(root)))
        assert card.process(bytes.fromhex("00A4040009A0000003080000100000"))[-2:] == b"\\x90\\x00"
        chuid = card.process(bytes.fromhex("00CB3FFF055C035FC10200"))
        assert chuid[:2] == b"\\x53\\x82" and chuid[-2] == 0x61, chuid.hex()  # 61xx: more
        print("no-hwgated-ok", sorted(m for m in sys.modules if m.startswith("hwgated")))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(TESTBED_PACKAGE.parent)}  # this very copy
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "no-hwgated-ok []" in done.stdout


# -- BER-TLV ---------------------------------------------------------------------------

_class = st.integers(0, 7)
_first_multi = _class.map(lambda hi: hi << 5 | 0x1F)
tags = st.one_of(
    st.builds(lambda hi, lo: hi << 5 | lo, _class, st.integers(0, 0x1E)),
    st.builds(lambda a, b: a << 8 | b, _first_multi, st.integers(0, 0x7F)),
    st.builds(
        lambda a, b, c: a << 16 | b << 8 | c, _first_multi, st.integers(0x80, 0xFF),
        st.integers(0, 0x7F),
    ),
)  # fmt: skip
values = st.one_of(st.binary(max_size=300), st.integers(0, 70_000).map(lambda n: b"\x5a" * n))


@settings(max_examples=200)
@given(tags, values)
def test_both_encoders_write_the_same_bytes(tag: int, value: bytes) -> None:
    card = ber.tlv(tag, value)
    daemon = Tlv(tag, value)
    assert card == bytes(daemon)
    assert (daemon.tag, daemon.value) == (tag, value)  # the daemon reads the card's bytes
    assert ber.unwrap(tag, bytes(daemon)) == value  # and the card the daemon's


@settings(max_examples=300)
@given(st.integers(-1, 0xFFFFFF + 1))
def test_both_agree_which_integers_are_tags(tag: int) -> None:
    verdicts = []
    for encode, error in ((ber.tlv, ber.BerError), (Tlv, TlvError)):
        try:
            verdicts.append(bytes(encode(tag, b"")))
        except error:
            verdicts.append(None)
    assert verdicts[0] == verdicts[1]


def _card_decode(data: bytes) -> list[tuple[int, bytes]] | None:
    try:
        return ber.decode_all(data)
    except ber.BerError:
        return None


def _daemon_decode(data: bytes) -> list[tuple[int, bytes]] | None:
    try:
        return [(t.tag, t.value) for t in Tlv.parse_list(data)]
    except TlvError:
        return None


tlv_streams = st.one_of(
    st.binary(max_size=80),
    st.lists(st.tuples(tags, st.binary(max_size=140)), max_size=5).map(
        lambda items: b"".join(ber.tlv(t, v) for t, v in items)
    ),
)


@settings(max_examples=500)
@given(tlv_streams, st.data())
def test_both_decoders_agree_on_any_input(stream: bytes, data: st.DataObject) -> None:
    """Differential: accept/refuse the same inputs and find the same (tag, value) list."""
    raw = bytearray(stream)
    if raw and data.draw(st.booleans()):  # damage a valid stream at one place
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 0xFF))
    if data.draw(st.booleans()):
        del raw[data.draw(st.integers(0, len(raw))) :]
    assert _card_decode(bytes(raw)) == _daemon_decode(bytes(raw))


# -- FASC-N ----------------------------------------------------------------------------

FIELD_NAMES = [name for name, _, _ in card_fascn.FIELDS]
TIG_FIELDS = ("0032", "0001", "092446", "0", "1", "1112223333", "1", "1223", "2")
TIG_BYTES = bytes.fromhex("D0439458210C2C19A0846D83685A1082108CE73984108CA3FC")


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


field_tuples = st.tuples(*(_digits(width) for _, width, _ in card_fascn.FIELDS))


def test_tig_example_both_ways() -> None:
    card = card_fascn.Fascn(*TIG_FIELDS)
    daemon = daemon_fascn.Fascn(*TIG_FIELDS)
    assert card.encode() == daemon.encode() == TIG_BYTES
    assert daemon_fascn.Fascn.decode(card.encode()) == card  # card's __eq__ is by field
    assert card_fascn.Fascn.decode(daemon.encode()) == card


@settings(max_examples=300)
@given(field_tuples)
def test_both_fascn_encoders_agree(fields: tuple[str, ...]) -> None:
    card = card_fascn.Fascn(*fields)
    daemon = daemon_fascn.Fascn(*fields)
    assert card.encode() == daemon.encode()
    decoded = daemon_fascn.Fascn.decode(card.encode())
    assert [getattr(decoded, n) for n in FIELD_NAMES] == list(fields)


def _decode_both(data: bytes) -> tuple[object, object]:
    out: list[object] = []
    for decode, error in (
        (card_fascn.Fascn.decode, card_fascn.FascnError),
        (daemon_fascn.Fascn.decode, PivParseError),
    ):
        try:
            out.append(tuple(getattr(decode(data), n) for n in FIELD_NAMES))
        except error:
            out.append(None)
    return out[0], out[1]


@settings(max_examples=400)
@given(field_tuples, st.lists(st.tuples(st.integers(0, 39), st.integers(0, 15)), max_size=3))
def test_both_fascn_decoders_agree(fields: tuple[str, ...], edits: list[tuple[int, int]]) -> None:
    """Replace characters with other well-formed ones (right parity): separators,
    sentinels, digits, LRC; both decoders must refuse or accept alike."""
    bits = list(format(int.from_bytes(card_fascn.Fascn(*fields).encode(), "big"), "0200b"))
    for position, code in edits:
        bits[5 * position : 5 * position + 5] = card_fascn.character_bits(code)
    data = int("".join(bits), 2).to_bytes(25, "big")
    card, daemon = _decode_both(data)
    assert card == daemon
    if not edits:
        assert card == fields


@settings(max_examples=300)
@given(st.binary(min_size=24, max_size=26))
def test_both_fascn_decoders_agree_on_raw_bytes(data: bytes) -> None:
    card, daemon = _decode_both(data)
    assert card == daemon


# -- whole data objects ------------------------------------------------------------------

FASCN = card_fascn.Fascn("9999", "9999", "999999", "0", "1", "0000000000", "3", "0000", "1")
GUID = uuid.UUID("3b5c0d3e-6f7a-4b8c-9d0e-1f2a3b4c5d6e")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PivCa:
    return ensure_piv_ca(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory, ca: PivCa) -> CardProfile:
    return provision_card(tmp_path_factory.mktemp("card"), "Xavier Cross", "ecc", ca)


def test_unsigned_chuid_matches_hand_written_bytes() -> None:
    """``53 3B 30 19 <FASC-N> 34 10 <GUID> 35 08 "20300101" 3E 00 FE 00`` (YubiKey-style)."""
    profile = CardProfile("x", "ecc", FASCN, GUID, dt.date(2030, 1, 1))
    expected = bytes.fromhex(
        "533B"
        "3019D4E739DA739CED39CE739D836858210842108421C84210C3EB"
        "34103B5C0D3E6F7A4B8C9D0E1F2A3B4C5D6E"
        "35083230333030313031"
        "3E00FE00"
    )
    assert build_objects(profile)[TAG_CHUID] == expected
    daemon = Chuid(daemon_fascn.Fascn.decode(FASCN.encode()), GUID, dt.date(2030, 1, 1))
    assert daemon.encode() == expected


def test_daemon_reads_the_signed_chuid_the_card_serves(profile: CardProfile) -> None:
    served = build_objects(profile)[TAG_CHUID]
    chuid = Chuid.parse(served)
    assert chuid.fascn == profile.fascn
    assert (chuid.guid, chuid.expiry) == (profile.guid, profile.expiry)
    assert chuid.signature == profile.chuid_signature and chuid.has_signature
    rebuilt = Chuid(chuid.fascn, chuid.guid, chuid.expiry, signature=chuid.signature)
    assert rebuilt.encode() == served  # the daemon's encoder writes the card's exact bytes


@pytest.mark.parametrize("slot", list(Slot))
def test_certificate_containers(profile: CardProfile, slot: Slot) -> None:
    served = build_objects(profile)[CERT_TAGS[slot]]
    der = profile.slots[slot].certificate.public_bytes(serialization.Encoding.DER)
    container = CertificateContainer.parse(served)
    assert container.certificate == der
    assert container.compressed == (slot in profile.compressed_slots)
    if not container.compressed:  # gzip output differs between encoders; the rest must not
        assert CertificateContainer(der).encode() == served
    # 53 82 xxxx { 70 82 xxxx cert, 71 01 info, FE 00 }, lengths written out by hand
    body = ber.unwrap(0x53, served)
    cert_field = body[: -len("710100FE00") // 2]
    assert body[-5:] == bytes([0x71, 1, 1 if container.compressed else 0, 0xFE, 0])
    assert cert_field[:2] == b"\x70\x82"
    assert int.from_bytes(cert_field[2:4], "big") == len(cert_field) - 4


def test_discovery_and_apt(profile: CardProfile) -> None:
    discovery = Discovery.parse(build_objects(profile)[TAG_DISCOVERY])
    assert discovery.aid == PIV_AID
    assert discovery.pin_policy == PinUsage.APPLICATION_PIN
    assert not discovery.global_pin_primary
    apt = application_property_template()
    expected = ApplicationPropertyTemplate(
        aid=PIV_AID, label="hwgate virtual PIV", algorithms=(0x07, 0x11), authority_aid=PIV_AID[:5]
    )
    assert ApplicationPropertyTemplate.parse(apt) == expected
    assert expected.encode() == apt
