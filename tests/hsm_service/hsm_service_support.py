"""Starting a hwgated that serves the test bed's SoftHSM2 token, with stubs per role.

One daemon is shared by the tests that do not damage it (module scope, so
startup is paid once); tests that kill workers or break the module start
their own with ``start_hsm_daemon``. Three Unix listeners give three roles:
admin (every RPC, every key, creates any key), enrollment (HsmService, every
key but issuing-ca, creates only ``svc-act-*`` keys) and kiosk (no HsmService).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from hwgate.v1 import hsm_pb2, hsm_pb2_grpc
from hwgate_testbed.paths import SOFTHSM_MODULE, TOKEN_LABEL
from support.daemon import DaemonProc, ready, start_daemon

KEY_RULES: list[tuple[str, list[str]]] = [
    ("derive-value:ecdh-*", ["admin"]),
    ("derive-value:svc-*", ["admin"]),
    ("issuing-ca", ["admin"]),
    ("svc-act-*", ["admin", "enrollment"]),
    ("*", ["admin", "enrollment"]),
]
# [[policy.wrap]] (keys, wrapping_keys, roles, operations): only wrap-esc-* keys are marked
# for escrow, wrapped out and in by the administrator under wrap-kek-* or escrow-kek keys;
# escrowed blobs are re-wrapped for peers by both roles.
WRAP_RULES: list[tuple[list[str], list[str], list[str], list[str]]] = [
    (["wrap-esc-*"], ["wrap-kek-*", "escrow-kek"], ["admin"], ["wrap", "unwrap"]),
    ([], ["wrap-kek-*", "escrow-kek"], ["admin", "enrollment"], ["rewrap"]),
]
# The `create` grant: the administrator mints any persistent key, the enrollment
# role only activation keys (``svc-act-*``, derived from activation-master).
KEY_CREATE: dict[str, list[str]] = {
    "issuing-ca": ["admin"],
    "svc-act-*": ["admin", "enrollment"],
    "*": ["admin"],
}


@dataclass
class HsmDaemon:
    """A running hwgated and where to reach each role."""

    proc: DaemonProc
    directory: Path

    def channel(self, role: str = "admin") -> grpc.Channel:
        channel = grpc.insecure_channel(f"unix:{self.directory / (role + '.sock')}")
        ready(channel, self.proc.proc)
        return channel

    def stub(self, role: str = "admin") -> hsm_pb2_grpc.HsmServiceStub:
        return hsm_pb2_grpc.HsmServiceStub(self.channel(role))

    def audit_records(self) -> list[dict[str, object]]:
        path = self.directory / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]


def render_config(
    directory: Path,
    testbed: object,
    module: str | None = None,
    extra_tokens: tuple[str, ...] = (),
    broken_tokens: tuple[str, ...] = (),
) -> Path:
    paths = testbed.paths  # type: ignore[attr-defined]
    q = json.dumps
    lines = [
        '[daemon]\nlog_level = "info"\ngrace_period = 1\n',
        f'[[listen]]\nunix = {q(str(directory / "admin.sock"))}\nmode = "0600"\nrole = "admin"\n',
        f'[[listen]]\nunix = {q(str(directory / "enrollment.sock"))}\nrole = "enrollment"\n',
        f'[[listen]]\nunix = {q(str(directory / "kiosk.sock"))}\nrole = "kiosk"\n',
        '[pcsc]\nreaders = ["no-such-reader-*"]\n',
        "[[hsm.token]]",
        'name = "testbed"',
        f"module = {q(module or str(SOFTHSM_MODULE))}",
        f"token_label = {q(TOKEN_LABEL)}",
        f"pin_file = {q(str(paths.user_pin))}",
        "workers = 2",
        "op_timeout = 10.0",
        f"env = {{ SOFTHSM2_CONF = {q(str(paths.softhsm_conf))} }}\n",
        *(
            # More names for the same token: a daemon with several tokens.
            f"[[hsm.token]]\nname = {q(name)}\nmodule = {q(module or str(SOFTHSM_MODULE))}\n"
            f"token_label = {q(TOKEN_LABEL)}\npin_file = {q(str(paths.user_pin))}\n"
            f"env = {{ SOFTHSM2_CONF = {q(str(paths.softhsm_conf))} }}\n"
            for name in extra_tokens
        ),
        *(
            # Tokens whose module cannot load: they stay DOWN.
            f"[[hsm.token]]\nname = {q(name)}\nmodule = {q(str(directory / 'no-such.so'))}\n"
            f"token_label = {q(TOKEN_LABEL)}\npin_file = {q(str(paths.user_pin))}\n"
            for name in broken_tokens
        ),
        f"[audit]\nfile = {q(str(directory / 'audit.jsonl'))}\n",
        '[policy.roles.admin]\nallow = ["*"]',
        '[policy.roles.enrollment]\nallow = ["hwgate.v1.HsmService/*"]',
        '[policy.roles.kiosk]\nallow = ["hwgate.v1.CardService/*"]\n',
    ]
    for pattern, roles in KEY_RULES:
        create = f"create = {q(KEY_CREATE[pattern])}\n" if pattern in KEY_CREATE else ""
        lines.append(f"[[policy.keys]]\npattern = {q(pattern)}\nroles = {q(roles)}\n{create}")
    for keys, wrapping, roles, operations in WRAP_RULES:
        lines.append(
            f"[[policy.wrap]]\n{f'keys = {q(keys)}' if keys else ''}\n"
            f"wrapping_keys = {q(wrapping)}\nroles = {q(roles)}\noperations = {q(operations)}\n"
        )
    config = directory / "hwgated.toml"
    config.write_text("\n".join(lines))
    return config


def start_hsm_daemon(
    directory: Path,
    testbed: object,
    module: str | None = None,
    extra_tokens: tuple[str, ...] = (),
    broken_tokens: tuple[str, ...] = (),
) -> HsmDaemon:
    directory.mkdir(parents=True, exist_ok=True)
    config = render_config(directory, testbed, module, extra_tokens, broken_tokens)
    proc = start_daemon(config, directory / "admin.sock", directory / "hwgated.log")
    return HsmDaemon(proc, directory)


HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}


def label(name: str) -> hsm_pb2.KeyRef:
    return hsm_pb2.KeyRef(label=name)


def public_key(stub, ref: hsm_pb2.KeyRef):  # type: ignore[no-untyped-def]
    return serialization.load_der_public_key(
        stub.GetPublicKey(hsm_pb2.GetPublicKeyRequest(key=ref)).der
    )


def verify(public, algorithm: str, signature: bytes, digest: bytes) -> None:  # type: ignore[no-untyped-def]
    """Raise InvalidSignature unless *signature* is *algorithm* over *digest*."""
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    kind, hash_name = algorithm.rsplit("_", 1)
    prehashed = Prehashed(HASHES[hash_name.lower()])
    if kind == "ECDSA":
        public.verify(signature, digest, ec.ECDSA(prehashed))
    elif kind == "RSA_PKCS1":
        public.verify(signature, digest, padding.PKCS1v15(), prehashed)
    else:
        pss = padding.PSS(
            padding.MGF1(HASHES[hash_name.lower()]), HASHES[hash_name.lower()].digest_size
        )
        public.verify(signature, digest, pss, prehashed)
