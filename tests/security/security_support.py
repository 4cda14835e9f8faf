"""A test PKI made per run, and a hwgated with Unix, mTLS and insecure-loopback listeners.

The PKI is made here (not the test bed's) so the tests can mint the certificates
an attacker or a misconfigured client would present: another CA, expired, not
yet valid, an identity the policy does not map.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hwgate_testbed.paths import SOFTHSM_MODULE, TOKEN_LABEL
from support.daemon import DaemonProc, error_info, start_daemon

T = TypeVar("T")
SPIFFE = "spiffe://hwgate.test/"
ROLES = ("kiosk", "enrollment", "admin")
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Credential:
    """PEM bytes for one TLS identity."""

    cert: bytes
    key: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class TestCa:
    """A CA that issues server and client certificates with chosen names and validity."""

    __test__ = False

    def __init__(self, name: str) -> None:
        self.key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY)
            .not_valid_after(now + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        cn: str | None,
        *,
        uri: str | None = None,
        server: bool = False,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> Credential:
        now = datetime.datetime.now(datetime.UTC)
        key = _key()
        names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
        sans: list[x509.GeneralName] = []
        if uri:
            sans.append(x509.UniformResourceIdentifier(uri))
        if server:
            sans += [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(names))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - DAY)
            .not_valid_after(not_after or now + 7 * DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Credential(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


@dataclass(frozen=True)
class Pki:
    """Everything the mTLS tests present, by name."""

    ca: TestCa
    server: Credential
    clients: dict[str, Credential]


def make_pki() -> Pki:
    ca, rogue = TestCa("hwgate security test CA"), TestCa("some other CA")
    now = datetime.datetime.now(datetime.UTC)
    clients = {role: ca.issue(role, uri=SPIFFE + role) for role in ROLES}
    clients["other-ca"] = rogue.issue("admin", uri=SPIFFE + "admin")
    clients["expired"] = ca.issue(
        "admin", uri=SPIFFE + "admin", not_before=now - 10 * DAY, not_after=now - DAY
    )
    clients["not-yet-valid"] = ca.issue(
        "admin", uri=SPIFFE + "admin", not_before=now + DAY, not_after=now + 10 * DAY
    )
    clients["unmapped"] = ca.issue("stranger", uri=SPIFFE + "stranger")
    clients["cn-only"] = ca.issue("operator")  # mapped by a [[policy.identity]] cn rule
    return Pki(ca, ca.issue("hwgated", server=True), clients)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the daemon binds it next)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


POLICY = """
[policy.roles.kiosk]
allow = ["hwgate.v1.CardService/ListReaders", "hwgate.v1.CardService/WatchEvents",
         "hwgate.v1.CardService/OpenSession", "hwgate.v1.CardService/CloseSession",
         "hwgate.v1.PivService/*", "hwgate.v1.HsmService/Sign"]
[policy.roles.enrollment]
allow = ["hwgate.v1.HsmService/*", "hwgate.v1.PivService/GetCardInfo"]
[policy.roles.admin]
allow = ["*"]
[[policy.identity]]
san_uri = "spiffe://hwgate.test/kiosk"
role = "kiosk"
[[policy.identity]]
san_uri = "spiffe://hwgate.test/enrollment"
role = "enrollment"
[[policy.identity]]
san_uri = "spiffe://hwgate.test/admin"
role = "admin"
[[policy.identity]]
cn = "operator"
role = "admin"
[[policy.keys]]
pattern = "issuing-ca"
roles = ["enrollment", "admin"]
[[policy.keys]]
pattern = "signer-*"
roles = ["enrollment", "admin"]
[[policy.keys]]
pattern = "*"
roles = ["admin"]
[[policy.readers]]
pattern = "*"
roles = ["kiosk", "admin"]
"""


@dataclass
class SecurityDaemon:
    """A running hwgated: kiosk Unix socket, mTLS port, insecure loopback port (kiosk)."""

    proc: DaemonProc
    directory: Path
    tls_port: int
    plain_port: int
    pki: Pki

    @property
    def audit_file(self) -> Path:
        return self.directory / "audit.jsonl"

    def audit_records(self) -> list[dict[str, Any]]:
        if not self.audit_file.exists():
            return []
        return [json.loads(line) for line in self.audit_file.read_text().splitlines()]

    def tls_channel(self, client: str | None) -> grpc.Channel:
        """A channel to the mTLS port presenting *client*'s certificate (None: no certificate)."""
        cred = self.pki.clients[client] if client else None
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca.pem,
            private_key=cred.key if cred else None,
            certificate_chain=cred.cert if cred else None,
        )
        return grpc.secure_channel(f"127.0.0.1:{self.tls_port}", creds)

    def plain_channel(self) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{self.plain_port}")

    def unix_channel(self) -> grpc.Channel:
        return self.proc.channel()


def write_security_config(
    directory: Path, testbed: Any, pki: Pki, *, limits: str = "", daemon: str = ""
) -> tuple[Path, int, int]:
    """Write the PKI files and hwgated.toml; returns (config, tls port, insecure port)."""
    pki_dir = directory / "pki"
    pki_dir.mkdir()
    (pki_dir / "ca.pem").write_bytes(pki.ca.pem)
    (pki_dir / "server.pem").write_bytes(pki.server.cert)
    (pki_dir / "server.key").write_bytes(pki.server.key)
    (pki_dir / "server.key").chmod(0o600)
    tls_port, plain_port = free_port(), free_port()
    q = json.dumps
    paths = testbed.paths
    text = f"""
[daemon]
log_level = "debug"
grace_period = 1
{daemon}
[[listen]]
unix = {q(str(directory / "hwgate.sock"))}
role = "kiosk"
[[listen]]
tcp = "127.0.0.1:{tls_port}"
tls_cert = "pki/server.pem"
tls_key = "pki/server.key"
client_ca = "pki/ca.pem"
[[listen]]
tcp = "127.0.0.1:{plain_port}"
insecure = true
role = "kiosk"
[[hsm.token]]
name = "testbed"
module = {q(str(SOFTHSM_MODULE))}
token_label = {q(TOKEN_LABEL)}
pin_file = {q(str(paths.user_pin))}
workers = 1
env = {{ SOFTHSM2_CONF = {q(str(paths.softhsm_conf))} }}
[audit]
file = "audit.jsonl"
[limits]
{limits}
{POLICY}
"""
    config = directory / "hwgated.toml"
    config.write_text(text)
    return config, tls_port, plain_port


def start_security_daemon(
    directory: Path, testbed: Any, pki: Pki, *, limits: str = "", daemon: str = ""
) -> SecurityDaemon:
    config, tls_port, plain_port = write_security_config(
        directory, testbed, pki, limits=limits, daemon=daemon
    )
    proc = start_daemon(config, directory / "hwgate.sock", directory / "hwgated.log")
    return SecurityDaemon(proc, directory, tls_port, plain_port, pki)


def failure(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """(code, reason, metadata) of a call that must fail with a rich status."""
    try:
        call()
    except grpc.RpcError as err:
        return error_info(err)
    raise AssertionError("the call succeeded but was expected to fail")


def status_code(call: Callable[[], object]) -> grpc.StatusCode:
    """The status code of a call that must fail (no rich status needed: TLS failures)."""
    try:
        call()
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    raise AssertionError("the call succeeded but was expected to fail")
