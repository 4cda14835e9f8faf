"""`hwgate-testbed` end to end, as a developer runs it: a real subprocess per
verb against the real pcscd, with reader state checked through pyscard."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from smartcard import scard

from hwgate_testbed.paths import TestbedPaths
from hwgate_testbed.pytest_plugin import CardSlots, Testbed

pytestmark = pytest.mark.testbed

SLOT0 = "Virtual PCD 00 00"
PIV_AID = bytes.fromhex("a000000308000010000100")


@dataclass
class Bed:
    paths: TestbedPaths
    up_stdout: str
    foreign_pcscd: int | None  # pid of a pcscd that ran before `up`


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "hwgate_testbed", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    if check and done.returncode != 0:
        pytest.fail(f"{args} exited {done.returncode}: {done.stderr}")
    return done


def pcscd_pid() -> int | None:
    try:
        # pcscd writes "PID\n\0"
        return int(Path("/run/pcscd/pcscd.pid").read_text().replace("\0", "").strip())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def reader_state(reader: str) -> tuple[bool, bytes]:
    """(card present, ATR) straight from pyscard, independent of the code under test."""
    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hr == scard.SCARD_S_SUCCESS
    try:
        hr, states = scard.SCardGetStatusChange(ctx, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        assert hr == scard.SCARD_S_SUCCESS
        _, flags, atr = states[0]
        return bool(flags & scard.SCARD_STATE_PRESENT), bytes(atr)
    finally:
        scard.SCardReleaseContext(ctx)


def select_piv(reader: str) -> bytes:
    """SELECT the PIV application; return the status word."""
    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    try:
        hr, card, proto = scard.SCardConnect(
            ctx, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        assert hr == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hr)
        apdu = bytes([0x00, 0xA4, 0x04, 0x00, len(PIV_AID)]) + PIV_AID + b"\x00"
        hr, resp = scard.SCardTransmit(card, proto, list(apdu))
        assert hr == scard.SCARD_S_SUCCESS
        scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
        return bytes(resp[-2:])
    finally:
        scard.SCardReleaseContext(ctx)


def status(bed: Bed) -> dict[str, Any]:
    return json.loads(run("status", "--json", "--dir", str(bed.paths.root)).stdout)


def slot0(bed: Bed) -> dict[str, Any]:
    return next(s for s in status(bed)["slots"] if s["slot"] == 0)


def ensure_alice_in_slot0(bed: Bed) -> None:
    if slot0(bed)["card"] != "alice":
        run("remove", "--slot", "0", "--dir", str(bed.paths.root))
        run("insert", "--slot", "0", "--card", "alice", "--dir", str(bed.paths.root))


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, testbed: Testbed) -> Iterator[Bed]:
    """A second test bed in its own directory; `testbed` makes sure a pcscd answers."""
    root = tmp_path_factory.mktemp("cli-bed")
    present, _ = reader_state(SLOT0)
    if present:
        pytest.fail(f"{SLOT0} already holds a card from outside this test: slot 0 must be free")
    foreign = pcscd_pid()
    done = run("up", "--dir", str(root))
    try:
        yield Bed(TestbedPaths.at(root), done.stdout, foreign)
    finally:
        run("down", "--dir", str(root), check=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_up_writes_every_file_and_keeps_secrets_private(bed: Bed) -> None:
    p = bed.paths
    secret = [p.user_pin, p.so_pin, p.pki_key("ca"), p.pki / "piv-ca.key",
              *(p.pki_key(n) for n in ("server", "kiosk", "enrollment", "admin"))]  # fmt: skip
    public = [p.softhsm_conf, p.env_file, p.daemon_config, p.pki_cert("ca"), p.pki / "piv-ca.pem",
              p.pki_cert("issuing-ca"), p.slot_pid(0), p.slot_log(0),
              *(p.pki_cert(n) for n in ("server", "kiosk", "enrollment", "admin")),
              *(p.card_dir(n) / "card.json" for n in ("alice", "bob"))]  # fmt: skip
    for f in secret:
        assert mode(f) == 0o600, f
    for f in public:
        assert f.is_file(), f
    assert any(p.tokens.iterdir())
    user, so = p.user_pin.read_text().strip(), p.so_pin.read_text().strip()
    assert len(user) >= 8 and len(so) >= 8 and user != so
    assert user not in bed.up_stdout and so not in bed.up_stdout


def test_up_prints_the_environment_file(bed: Bed) -> None:
    env_text = bed.paths.env_file.read_text()
    assert env_text in bed.up_stdout
    shell = (
        f". {bed.paths.env_file}; echo $SOFTHSM2_CONF; echo $HWGATE_ADDR; echo $HWGATE_TOKEN_LABEL"
    )
    out = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True).stdout
    assert out.split() == [
        str(bed.paths.softhsm_conf),
        f"unix://{bed.paths.admin_socket}",
        "hwgate-testbed",
    ]
    for var in ("HWGATE_PKCS11_MODULE", "HWGATE_TOKEN_PIN_FILE", "HWGATE_TOKEN_SO_PIN_FILE"):
        assert f"export {var}=/" in env_text


def test_hwgated_toml_has_the_documented_endpoints_and_policy(bed: Bed) -> None:
    p = bed.paths
    cfg = tomllib.loads(p.daemon_config.read_text())
    assert set(cfg) <= {"daemon", "listen", "pcsc", "hsm", "audit", "policy", "limits"}
    unix = {entry["unix"]: entry for entry in cfg["listen"] if "unix" in entry}
    assert unix[str(p.kiosk_socket)] == {
        "unix": str(p.kiosk_socket),
        "mode": "0660",
        "role": "kiosk",
    }
    assert unix[str(p.admin_socket)] == {
        "unix": str(p.admin_socket),
        "mode": "0600",
        "role": "admin",
    }
    (tcp,) = [entry for entry in cfg["listen"] if "tcp" in entry]
    assert tcp == {
        "tcp": "127.0.0.1:7443",
        "tls_cert": str(p.pki_cert("server")),
        "tls_key": str(p.pki_key("server")),
        "client_ca": str(p.pki_cert("ca")),
    }
    assert cfg["pcsc"]["readers"] == ["*"]
    (token,) = cfg["hsm"]["token"]
    assert token["name"] == "testbed"
    assert token["token_label"] == "hwgate-testbed"
    assert token["module"] == "/usr/lib/softhsm/libsofthsm2.so"
    assert token["pin_file"] == str(p.user_pin)
    assert token["env"] == {"SOFTHSM2_CONF": str(p.softhsm_conf)}
    assert cfg["audit"]["file"] == str(p.audit_log)
    roles = cfg["policy"]["roles"]
    assert roles["admin"]["allow"] == ["*"]
    # The kiosk gets CardService without Transmit (raw APDUs are an admin's tool).
    for rpc in ("ListReaders", "WatchEvents", "OpenSession", "CloseSession"):
        assert f"hwgate.v1.CardService/{rpc}" in roles["kiosk"]["allow"]
    assert not any(
        a in ("hwgate.v1.CardService/*", "hwgate.v1.CardService/Transmit", "*")
        for a in roles["kiosk"]["allow"]
    )
    assert cfg["policy"]["transmit_security"] == ["admin"]
    assert "hwgate.v1.HsmService/Sign" in roles["enrollment"]["allow"]
    assert not any(a.startswith("hwgate.v1.HsmService") for a in roles["kiosk"]["allow"])
    keys = {rule["pattern"]: rule["roles"] for rule in cfg["policy"]["keys"]}
    assert keys["activation-master"] == ["enrollment", "admin"]
    assert keys["*"] == ["admin"]
    assert cfg["policy"]["readers"] == [{"pattern": "*", "roles": ["kiosk", "admin"]}]
    # the identity mapping names exactly the SAN URIs the client certificates carry
    mapping = {i["san_uri"]: i["role"] for i in cfg["policy"]["identity"]}
    for role in ("kiosk", "enrollment", "admin"):
        cert = x509.load_pem_x509_certificate(p.pki_cert(role).read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        (uri,) = san.get_values_for_type(x509.UniformResourceIdentifier)
        assert mapping[uri] == role


def test_up_again_changes_nothing(bed: Bed) -> None:
    ensure_alice_in_slot0(bed)
    p = bed.paths
    files = [p.user_pin, p.so_pin, p.pki_cert("ca"), p.pki_cert("server"), p.pki / "piv-ca.pem",
             p.card_dir("alice") / "card.json", p.pki_cert("issuing-ca")]  # fmt: skip
    before = {f: f.read_bytes() for f in files}
    status_before = status(bed)
    run("up", "--dir", str(p.root))
    assert {f: f.read_bytes() for f in files} == before
    status_after = status(bed)
    assert status_after["token"]["objects"] == status_before["token"]["objects"]
    # same card processes kept (slot 1's presence belongs to whoever else uses it)
    ours = [
        [(s["slot"], s["card"], s["pid"]) for s in st["slots"]]
        for st in (status_before, status_after)
    ]
    assert ours[0] == ours[1]


def test_insert_and_remove_change_what_pcscd_reports(bed: Bed) -> None:
    root = str(bed.paths.root)
    try:
        run("remove", "--slot", "0", "--dir", root)
        assert reader_state(SLOT0) == (False, b"")
        out = run("insert", "--slot", "0", "--card", "bob", "--dir", root).stdout
        assert "inserted bob" in out
        present, atr = reader_state(SLOT0)
        assert present and atr
        assert select_piv(SLOT0) == b"\x90\x00"
        run("remove", "--slot", "0", "--dir", root)
        assert reader_state(SLOT0)[0] is False
        assert slot0(bed)["card"] is None
    finally:
        ensure_alice_in_slot0(bed)


def test_insert_provisions_a_new_card_with_the_asked_key_type(bed: Bed) -> None:
    root = str(bed.paths.root)
    try:
        run("remove", "--slot", "0", "--dir", root)
        run("insert", "--slot", "0", "--card", "carol", "--key-type", "rsa", "--dir", root)
        doc = json.loads((bed.paths.card_dir("carol") / "card.json").read_text())
        assert doc["key_type"] == "rsa"
        assert reader_state(SLOT0)[0] is True
        again = run("insert", "--slot", "1", "--card", "carol", "--key-type", "ecc", "--dir", root,
                    check=False)  # fmt: skip
        assert again.returncode == 1 and "key type rsa" in again.stderr
    finally:
        ensure_alice_in_slot0(bed)


def test_second_insert_into_an_occupied_slot_fails(bed: Bed) -> None:
    ensure_alice_in_slot0(bed)
    pid = slot0(bed)["pid"]
    done = run("insert", "--slot", "0", "--card", "bob", "--dir", str(bed.paths.root), check=False)
    assert done.returncode == 1
    assert "already holds card 'alice'" in done.stderr
    assert slot0(bed)["pid"] == pid and alive(pid)
    assert reader_state(SLOT0)[0] is True


def test_status_json_reports_readers_cards_token_and_processes(bed: Bed) -> None:
    ensure_alice_in_slot0(bed)
    st = status(bed)
    assert st["dir"] == str(bed.paths.root)
    assert st["pcscd"]["running"] is True
    assert st["pcscd"]["started_here"] is (bed.foreign_pcscd is None)
    readers = {r["name"]: r for r in st["readers"]}
    assert readers[SLOT0]["present"] is True and readers[SLOT0]["atr"]
    s0 = slot0(bed)
    assert (s0["card"], s0["port"], s0["present"]) == ("alice", 35963, True)
    assert {"what": "card alice (slot 0)", "pid": s0["pid"]} in st["processes"]
    assert st["token"]["label"] == "hwgate-testbed"
    seven = ["issuing-ca", "signer-p256", "signer-rsa", "ecdh-p256", "activation-master",
             "hmac-key", "escrow-kek"]  # fmt: skip
    assert st["token"]["keys"] == sorted(seven)
    assert {"alice", "bob"} <= set(st["cards"])
    escrowed = {r["card"]: r["key_algorithm"] for r in st["escrow"]}
    assert {"alice": "KEY_ALGORITHM_EC_P256", "bob": "KEY_ALGORITHM_RSA_2048"}.items() <= (
        escrowed.items()
    )
    assert st["piv"] == {"pin": "123456", "puk": "12345678"}


def test_down_stops_only_what_it_started_and_keeps_the_files(bed: Bed) -> None:
    ensure_alice_in_slot0(bed)
    card_pid = slot0(bed)["pid"]
    pcscd_before = pcscd_pid()
    root = str(bed.paths.root)
    try:
        out = run("down", "--dir", root).stdout
        assert "removed alice from slot 0" in out
        assert not alive(card_pid)
        assert reader_state(SLOT0)[0] is False
        if bed.foreign_pcscd is not None:
            assert "left running" in out
            assert pcscd_before is not None and alive(pcscd_before)
        assert bed.paths.user_pin.is_file() and any(bed.paths.tokens.iterdir())
        assert bed.paths.pki_cert("server").is_file()
        assert "stopped pcscd" not in run("down", "--dir", root).stdout  # idempotent
    finally:
        run("up", "--dir", root)


NAMESPACE_SCRIPT = """
set -e
mount -t tmpfs tmpfs /run/pcscd
ip link set lo up
T="$PYTHON -m hwgate_testbed"
$T up --dir "$DIR" > "$DIR/out-up.txt"
$T status --json --dir "$DIR" > "$DIR/out-status.json"
$T down --dir "$DIR" > "$DIR/out-down.txt"
test ! -e /run/pcscd/pcscd.comm && echo socket-gone > "$DIR/out-socket.txt"
$T down --dir "$DIR" > "$DIR/out-down2.txt"
"""


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_up_starts_pcscd_when_none_runs_and_down_stops_it(tmp_path: Path) -> None:
    """In a private mount + network namespace no pcscd answers, so `up` must start
    one (and the card), and `down` must stop both."""
    env = {**os.environ, "PYTHON": sys.executable, "DIR": str(tmp_path)}
    done = subprocess.run(["unshare", "-mn", "sh", "-c", NAMESPACE_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"no namespaces here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert "pcscd:   started, pid" in (tmp_path / "out-up.txt").read_text()
    st = json.loads((tmp_path / "out-status.json").read_text())
    assert st["pcscd"]["started_here"] is True
    pid = st["pcscd"]["pid"]
    assert {"what": "pcscd", "pid": pid} in st["processes"]
    assert [s["card"] for s in st["slots"] if s["slot"] == 0] == ["alice"]
    assert "stopped pcscd" in (tmp_path / "out-down.txt").read_text()
    assert (tmp_path / "out-socket.txt").read_text().strip() == "socket-gone"
    assert not alive(pid)
    assert not (tmp_path / "pcscd.pid").exists()
    assert "stopped pcscd" not in (tmp_path / "out-down2.txt").read_text()


def test_plugin_cards_helper_inserts_and_cleans_up(bed: Bed, testbed: Testbed) -> None:
    """The `cards` fixture's helper (used directly here, so its clean-up can be
    observed) waits for pcscd on insert and leaves the reader empty afterwards."""
    # The environment the plugin exports for this bed (os.environ itself may name
    # another bed's token directory after an in-process demo bed loaded SoftHSM).
    assert testbed.env["SOFTHSM2_CONF"] == str(testbed.paths.softhsm_conf)
    run("remove", "--slot", "0", "--dir", str(bed.paths.root))
    try:
        helper = CardSlots(testbed)
        card = helper.insert(slot=0, name="bob")
        assert (card.reader, card.name) == (SLOT0, "bob")
        assert reader_state(SLOT0)[0] is True
        assert json.loads((card.card_dir / "card.json").read_text())["key_type"] == "rsa"
        helper.remove_all()
        assert helper.inserted == {}
        assert reader_state(SLOT0)[0] is False
        assert not alive(card.pid)
    finally:
        ensure_alice_in_slot0(bed)


def read_chuid(reader: str) -> bytes:
    """GET DATA 5FC102 after SELECT, following 61xx; the whole body."""
    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    try:
        hr, card, proto = scard.SCardConnect(
            ctx, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        assert hr == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hr)
        select = bytes([0x00, 0xA4, 0x04, 0x00, len(PIV_AID)]) + PIV_AID + b"\x00"
        scard.SCardTransmit(card, proto, list(select))
        hr, resp = scard.SCardTransmit(card, proto, list(bytes.fromhex("00CB3FFF055C035FC10200")))
        body = bytes(resp[:-2])
        while resp[-2] == 0x61:
            hr, resp = scard.SCardTransmit(card, proto, [0x00, 0xC0, 0x00, 0x00, resp[-1]])
            body += bytes(resp[:-2])
        assert bytes(resp[-2:]) == b"\x90\x00"
        scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
        return body
    finally:
        scard.SCardReleaseContext(ctx)


def test_insert_with_a_quirk_profile_serves_it_for_that_insertion(bed: Bed) -> None:
    root = str(bed.paths.root)
    placeholder = bytes([0x30, 25]) + bytes(25)
    try:
        run("remove", "--slot", "0", "--dir", root)
        bad = run("insert", "--slot", "0", "--profile", "no-such-quirk", "--dir", root,
                  check=False)  # fmt: skip
        assert bad.returncode == 1 and "unknown card profile" in bad.stderr
        assert reader_state(SLOT0)[0] is False
        run("insert", "--slot", "0", "--card", "alice", "--profile", "zero-fascn", "--dir", root)
        assert placeholder in read_chuid(SLOT0)
        run("remove", "--slot", "0", "--dir", root)
        run("insert", "--slot", "0", "--card", "alice", "--dir", root)
        assert placeholder not in read_chuid(SLOT0)
    finally:
        run("remove", "--slot", "0", "--dir", root, check=False)
        ensure_alice_in_slot0(bed)
