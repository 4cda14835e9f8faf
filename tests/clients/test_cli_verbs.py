"""The friendly verbs' JSON output, against the real daemon, cards and SoftHSM token."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from clients_support import CliResult, run_cli
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from hwgate_testbed.paths import PIV_PIN, vpcd_reader

pytestmark = pytest.mark.testbed
R0 = vpcd_reader(0)


def needs(result: CliResult) -> CliResult:
    """Skip when the service is not there yet (the RPC answers UNIMPLEMENTED)."""
    if result.code == 64 + 12:
        pytest.skip("the service answers UNIMPLEMENTED (not landed yet)")
    return result


def cli(conn: list[str], *args: str, stdin: bytes = b"") -> CliResult:
    """``hwgate CONNECTION ARGS``; *conn* is the Unix socket or mTLS (the ``conn`` fixture)."""
    return run_cli([*conn, *args], stdin=stdin)


def test_readers_json_shows_inserted_card(conn: list[str], cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    result = cli(conn, "readers", "--json")
    assert result.code == 0, result.err
    readers = {r["name"]: r for r in result.json()["readers"]}  # type: ignore[index]
    assert readers[R0]["state"] == "READER_STATE_PRESENT"
    assert readers[R0]["card"]["isPiv"] is True
    table = cli(conn, "readers")
    assert R0 in table.out and "present" in table.out


def test_watch_json_lines_snapshot_then_count(conn: list[str]) -> None:
    result = cli(conn, "watch", "--reader", R0, "--json", "--count", "2")
    assert result.code == 0, result.err
    events = result.lines()
    kinds = [e["type"] for e in events]
    assert kinds == ["EVENT_TYPE_READER_STATE", "EVENT_TYPE_SNAPSHOT_COMPLETE"]
    assert events[0]["reader"] == R0 and events[0]["snapshot"] is True


def test_watch_max_time_ends_cleanly(conn: list[str]) -> None:
    result = cli(conn, "watch", "--json", "--max-time", "0.5")
    assert result.code == 0, result.err
    assert result.lines()[-1]["type"] == "EVENT_TYPE_SNAPSHOT_COMPLETE"


def test_health_json(conn: list[str]) -> None:
    result = cli(conn, "health", "--json")
    assert result.code == 0, result.err
    assert result.json() == {
        "": "SERVING",
        "hwgate.v1.CardService": "SERVING",
        "hwgate.v1.PivService": "SERVING",
        "hwgate.v1.HsmService": "SERVING",
    }


def test_card_info_json(conn: list[str], cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    result = needs(cli(conn, "card", "info", "--reader", R0, "--json"))
    assert result.code == 0, result.err
    info = result.json()
    assert info["reader"] == R0  # type: ignore[index]
    assert info["chuid"]["guid"]  # type: ignore[index]
    assert info["pinRetriesLeft"] > 0  # type: ignore[index]
    slots = [c["slot"] for c in info["certificates"]]  # type: ignore[index]
    assert "SLOT_PIV_AUTHENTICATION" in slots


def test_verify_pin_from_stdin_file_and_wrong_pin(
    conn: list[str], cards: object, tmp_path: Path
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    ok = needs(
        cli(
            conn,
            "card",
            "verify-pin",
            "--reader",
            R0,
            "--pin-stdin",
            "--json",
            stdin=PIV_PIN.encode() + b"\n",
        )
    )
    assert ok.code == 0, ok.err
    assert ok.json() == {"reader": R0, "verified": True}
    wrong = cli(
        conn, "--json", "card", "verify-pin", "--reader", R0, "--pin-stdin", stdin=b"000000\n"
    )
    assert wrong.code == 64 + 9, wrong.err  # FAILED_PRECONDITION
    error = json.loads(wrong.err)
    assert error["reason"] == "PIN_INCORRECT" and error["metadata"]["retries_left"].isdigit()
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIV_PIN + "\n")
    again = cli(conn, "card", "verify-pin", "--reader", R0, "--pin-file", str(pin_file))
    assert again.code == 0 and "verified" in again.out  # and the retry counter is reset


def test_verify_pin_refuses_pin_as_argument(conn: list[str]) -> None:
    assert cli(conn, "card", "verify-pin", "--reader", R0, PIV_PIN).code == 1


def test_keys_json_lists_testbed_keys(conn: list[str]) -> None:
    result = needs(cli(conn, "keys", "--json"))
    assert result.code == 0, result.err
    labels = {k["label"]: k for k in result.json()["keys"]}  # type: ignore[index]
    assert {"issuing-ca", "signer-p256", "signer-rsa", "hmac-key"} <= set(labels)
    assert labels["signer-p256"]["algorithm"] == "KEY_ALGORITHM_EC_P256"
    only = needs(cli(conn, "keys", "--label", "signer-*", "--json"))
    assert {k["label"] for k in only.json()["keys"]} == {"signer-p256", "signer-rsa"}  # type: ignore[index]


def test_key_pub_pem_and_json(conn: list[str]) -> None:
    pem = needs(cli(conn, "key", "pub", "signer-p256", "--pem"))
    assert pem.code == 0, pem.err
    key = serialization.load_pem_public_key(pem.out.encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    as_json = cli(conn, "key", "pub", "signer-p256", "--json").json()
    assert as_json["algorithm"] == "KEY_ALGORITHM_EC_P256"  # type: ignore[index]
    der = base64.b64decode(as_json["der"])  # type: ignore[index]
    assert der == key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _public(conn: list[str], label: str) -> ec.EllipticCurvePublicKey:
    pem = needs(cli(conn, "key", "pub", label, "--pem"))
    key = serialization.load_pem_public_key(pem.out.encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def test_sign_file_and_digest_verify(conn: list[str], tmp_path: Path) -> None:
    public = _public(conn, "signer-p256")
    document = tmp_path / "doc.txt"
    document.write_bytes(b"derived PIV credential request")
    out = tmp_path / "doc.sig"
    result = cli(
        conn,
        "sign",
        "signer-p256",
        "--alg",
        "ecdsa-sha256",
        "--in",
        str(document),
        "--out",
        str(out),
    )
    assert result.code == 0, result.err
    public.verify(out.read_bytes(), document.read_bytes(), ec.ECDSA(hashes.SHA256()))
    digest = tmp_path / "doc.sha384"
    digest.write_bytes(hashlib.sha384(document.read_bytes()).digest())
    to_stdout = cli(
        conn,
        "sign",
        "signer-p256",
        "--alg",
        "ecdsa-sha384",
        "--in",
        str(digest),
        "--digest",
    )
    assert to_stdout.code == 0, to_stdout.err
    public.verify(to_stdout.raw, digest.read_bytes(), ec.ECDSA(utils.Prehashed(hashes.SHA384())))


def test_sign_errors_have_reasons(conn: list[str], tmp_path: Path) -> None:
    document = tmp_path / "d"
    document.write_bytes(b"x")
    missing = cli(
        conn,
        "--json",
        "sign",
        "no-such-key",
        "--alg",
        "ecdsa-sha256",
        "--in",
        str(document),
    )
    assert missing.code == 64 + 5, missing.err  # NOT_FOUND
    assert json.loads(missing.err)["reason"] == "KEY_NOT_FOUND"
    bad_alg = cli(conn, "sign", "signer-p256", "--alg", "ecdsa-md5", "--in", "x")
    assert bad_alg.code == 1


def test_keygen_then_derive_ecdh(conn: list[str], tmp_path: Path) -> None:
    label = "cli-test-ec-" + ("mtls" if "--cert" in conn else "unix")  # session keys stay
    gen = needs(cli(conn, "keygen", label, "--alg", "ec-p256", "--ephemeral", "--json"))
    assert gen.code == 0, gen.err
    assert gen.json()["label"] == label  # type: ignore[index]
    assert gen.json()["algorithm"] == "KEY_ALGORITHM_EC_P256"  # type: ignore[index]
    exists = cli(conn, "keygen", label, "--alg", "ec-p256", "--ephemeral")
    assert exists.code == 64 + 6 and "KEY_EXISTS" in exists.err  # ALREADY_EXISTS
    peer = ec.generate_private_key(ec.SECP256R1())
    peer_file = tmp_path / "peer.pem"
    peer_file.write_bytes(
        peer.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    derived = needs(
        cli(
            conn,
            "derive",
            "ecdh-p256",
            "--mechanism",
            "ecdh",
            "--peer-key",
            str(peer_file),
            "--algorithm",
            "aes-256",
            "--extractable",
            "--return-value",
            "--json",
        )
    )
    assert derived.code == 0, derived.err
    value = base64.b64decode(derived.json()["value"])  # type: ignore[index]
    own = _public(conn, "ecdh-p256")
    expected = peer.exchange(ec.ECDH(), own)
    assert value == expected[:32]


def test_card_info_table_prints_serials_as_openssl_does(conn: list[str], cards: object) -> None:
    import subprocess

    from hwgate_testbed.vcard.profile import CardProfile, Slot

    handle = cards.insert(0, "alice")  # type: ignore[attr-defined]
    profile = CardProfile.load(handle.card_dir)
    result = needs(cli(conn, "card", "info", "--reader", R0))
    assert result.code == 0, result.err
    printed = [line.split()[-1] for line in result.out.splitlines() if " serial " in line]
    expected = []
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE, Slot.KEY_MANAGEMENT, Slot.CARD_AUTH):
        pem = profile.slots[slot].certificate.public_bytes(serialization.Encoding.PEM)
        openssl = subprocess.run(
            ["openssl", "x509", "-noout", "-serial"], input=pem, capture_output=True, check=True
        )
        expected.append(openssl.stdout.decode().strip().removeprefix("serial="))
    assert printed == expected
    assert all(len(s) % 2 == 0 for s in printed)
