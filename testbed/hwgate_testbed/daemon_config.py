"""hwgated.toml for the test bed, following docs/config-schema.md.

The file is rendered as text (the standard library reads TOML but cannot write
it); strings go through JSON quoting, which TOML basic strings accept. Every
path in it is absolute so the file works from any working directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from hwgate_testbed.fsutil import write_trusted
from hwgate_testbed.paths import PKI_CLIENTS, SOFTHSM_MODULE, TCP_LISTEN, TOKEN_LABEL, TestbedPaths
from hwgate_testbed.tlspki import TlsPki, spiffe_uri

HEALTH = "grpc.health.v1.Health/*"
# Everything of CardService but Transmit: raw APDUs are an administrator's tool.
KIOSK_CARD = [
    f"hwgate.v1.CardService/{rpc}"
    for rpc in ("ListReaders", "WatchEvents", "OpenSession", "CloseSession")
]
ROLE_ALLOW: dict[str, list[str]] = {
    "kiosk": [*KIOSK_CARD, "hwgate.v1.PivService/*", HEALTH],
    "enrollment": [
        "hwgate.v1.HsmService/Sign",
        # Client.hsm_key() coalesces concurrent signatures into SignStream batches:
        # without it an enrollment server issuing in parallel is refused.
        "hwgate.v1.HsmService/SignStream",
        "hwgate.v1.HsmService/GetPublicKey",
        "hwgate.v1.HsmService/Derive",
        "hwgate.v1.HsmService/ListKeys",
        "hwgate.v1.HsmService/RewrapForPeer",
        HEALTH,
    ],
    "admin": ["*"],
}
KEY_RULES: list[tuple[str, list[str]]] = [
    ("issuing-ca", ["enrollment", "admin"]),
    ("signer-*", ["enrollment", "admin"]),
    ("hmac-key", ["enrollment", "admin"]),
    ("activation-master", ["enrollment", "admin"]),
    ("ecdh-p256", ["enrollment", "admin"]),
    ("escrow-kek", ["enrollment", "admin"]),
    ("*", ["admin"]),
]
# [[policy.wrap]]: the enrollment server may re-wrap keys escrowed under escrow-kek for a
# user's device (key recovery, RewrapForPeer); nothing in the token is marked for escrow
# (no rule with "wrap"), so no key of the token can be wrapped out.
WRAP_RULES: list[dict[str, list[str]]] = [
    {"wrapping_keys": ["escrow-kek"], "roles": ["enrollment", "admin"], "operations": ["rewrap"]},
]
# Which roles may create new persistent keys under each KEY_RULES pattern (the
# `create` grant): only the administrator; the enrollment server uses keys.
KEY_CREATE: dict[str, list[str]] = {pattern: ["admin"] for pattern, _ in KEY_RULES}
READER_RULES: list[tuple[str, list[str]]] = [("*", ["kiosk", "admin"])]
# Roles whose Transmit may carry VERIFY, GENERAL AUTHENTICATE, key generation, PUT DATA...
TRANSMIT_SECURITY = ["admin"]


def _q(value: object) -> str:
    """A TOML value: strings and lists of strings JSON-quoted, numbers as is."""
    return json.dumps(value)


def _table(header: str, items: Iterable[tuple[str, object]]) -> list[str]:
    return [header, *(f"{k} = {_q(v)}" for k, v in items), ""]


def render(paths: TestbedPaths, pki: TlsPki) -> str:
    """The config text for this test bed."""
    lines = ["# Written by `hwgate-testbed up`; rerun it rather than editing.", ""]
    lines += _table("[daemon]", [("log_level", "info"), ("grace_period", 5.0),
                                 ("max_message_bytes", 1048576)])  # fmt: skip
    lines += _table("[[listen]]", [("unix", str(paths.kiosk_socket)), ("mode", "0660"),
                                   ("role", "kiosk")])  # fmt: skip
    lines += _table("[[listen]]", [("unix", str(paths.admin_socket)), ("mode", "0600"),
                                   ("role", "admin")])  # fmt: skip
    lines += _table("[[listen]]", [
        ("tcp", TCP_LISTEN), ("tls_cert", str(pki.server_cert)),
        ("tls_key", str(pki.server_key)), ("client_ca", str(pki.ca_cert)),
    ])  # fmt: skip
    lines += _table("[pcsc]", [
        ("readers", ["*"]), ("max_session_ttl", 30.0), ("max_apdus_per_transmit", 64),
        ("journal_size", 1024), ("subscriber_queue", 256),
    ])  # fmt: skip
    lines += _table("[[hsm.token]]", [
        ("name", "testbed"), ("module", str(SOFTHSM_MODULE)), ("token_label", TOKEN_LABEL),
        ("pin_file", str(paths.user_pin)), ("workers", 2), ("op_timeout", 10.0),
    ])[:-1]  # fmt: skip
    lines += [f"env = {{ SOFTHSM2_CONF = {_q(str(paths.softhsm_conf))} }}", ""]
    lines += _table("[audit]", [("file", str(paths.audit_log))])
    lines += _table("[policy]", [("transmit_security", TRANSMIT_SECURITY)])
    for role, allow in ROLE_ALLOW.items():
        lines += _table(f"[policy.roles.{role}]", [("allow", allow)])
    for name in PKI_CLIENTS:
        lines += _table("[[policy.identity]]", [("san_uri", spiffe_uri(name)), ("role", name)])
    for pattern, roles in KEY_RULES:
        create = KEY_CREATE.get(pattern, [])
        lines += _table("[[policy.keys]]", [("pattern", pattern), ("roles", roles),
                                            *([("create", create)] if create else [])])  # fmt: skip
    for rule in WRAP_RULES:
        lines += _table("[[policy.wrap]]", rule.items())
    for pattern, roles in READER_RULES:
        lines += _table("[[policy.readers]]", [("pattern", pattern), ("roles", roles)])
    lines += _table("[limits]", [("verify_pin_per_minute", 10), ("max_sessions_per_identity", 4),
                                 ("max_streams_per_connection", 100)])  # fmt: skip
    return "\n".join(lines)


def write(paths: TestbedPaths, pki: TlsPki) -> None:
    write_trusted(paths.daemon_config, render(paths, pki))
