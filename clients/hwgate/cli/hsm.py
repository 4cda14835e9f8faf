"""Friendly HSM verbs: ``keys``, ``key pub KEY``, ``sign KEY``, ``derive KEY``, ``keygen KEY``.

The HSM key is always the positional ``KEY`` (dest ``hsm_key``): the global
connection options keep grpcurl's names (``--key`` is the client's private key),
and a subcommand option with the same name or dest would overwrite them.
"""

from __future__ import annotations

import argparse
import base64
import sys

from cryptography.hazmat.primitives import serialization

from hwgate import names
from hwgate.cli.context import Context
from hwgate.cli.output import EXIT_OK, print_json, print_table, to_dict
from hwgate.client import digest_for
from hwgate.v1 import common_pb2, hsm_pb2

FMT = argparse.RawDescriptionHelpFormatter
SIG_CHOICES = names.kebab_choices(common_pb2.SignatureAlgorithm, names.SIG_PREFIX)
KEY_CHOICES = names.kebab_choices(common_pb2.KeyAlgorithm, names.KEY_PREFIX)
DERIVE_CHOICES = ["ecdh", "aes-ecb-encrypt-data", "aes-cbc-encrypt-data"]


def _alg(value: int) -> str:
    return names.kebab(common_pb2.KeyAlgorithm, value, names.KEY_PREFIX)


def _usages(key: hsm_pb2.KeyInfo) -> str:
    return ",".join(hsm_pb2.KeyUsage.Name(u).removeprefix("KEY_USAGE_").lower() for u in key.usages)


def cmd_keys(ctx: Context) -> int:
    a = ctx.args
    keys = ctx.client().list_keys(a.token or "", a.label or "", page_size=a.page_size)
    if ctx.json:
        print_json(to_dict(hsm_pb2.ListKeysResponse(keys=keys)))
        return EXIT_OK
    rows = [
        (k.token, k.label, hsm_pb2.KeyClass.Name(k.key_class).removeprefix("KEY_CLASS_").lower(),
         _alg(k.algorithm), _usages(k))
        for k in keys
    ]  # fmt: skip
    print_table(["TOKEN", "LABEL", "CLASS", "ALGORITHM", "USAGES"], rows)
    return EXIT_OK


def cmd_key_pub(ctx: Context) -> int:
    ref = ctx.args.hsm_key
    response = ctx.client().get_public_key(names.key_ref(ref, ctx.args.token or ""))
    if ctx.args.pem:
        sys.stdout.write(response.pem if response.pem.endswith("\n") else response.pem + "\n")
    elif ctx.json:
        print_json(to_dict(response))
    else:
        print_table(
            ["FIELD", "VALUE"],
            [("key", response.key.uri or ref), ("algorithm", _alg(response.algorithm)),
             ("spki (base64)", base64.b64encode(response.der).decode())],
        )  # fmt: skip
    return EXIT_OK


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def cmd_sign(ctx: Context) -> int:
    a = ctx.args
    algorithm = names.signature_algorithm(a.alg)
    data = _read_input(a.input)
    key = names.key_ref(a.hsm_key, a.token or "")
    if algorithm == common_pb2.SIGNATURE_ALGORITHM_HMAC_SHA256:
        signature = ctx.client().sign(key, algorithm, data=data)
    else:
        digest = data if a.digest else digest_for(algorithm, data)
        signature = ctx.client().sign(key, algorithm, digest=digest)
    if a.out:
        with open(a.out, "wb") as f:
            f.write(signature)
    if ctx.json:
        print_json({"signature": base64.b64encode(signature).decode(), "algorithm": a.alg})
    elif not a.out:
        sys.stdout.buffer.write(signature)
        sys.stdout.flush()
    return EXIT_OK


def _peer_key(path: str | None) -> bytes:
    """A PEM or DER public key file as DER SPKI; a raw point file as is."""
    if not path:
        return b""
    raw = _read_input(path)
    if raw.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(raw)
        return key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return raw


def cmd_derive(ctx: Context) -> int:
    a = ctx.args
    request = hsm_pb2.DeriveRequest(
        base_key=names.key_ref(a.hsm_key, a.token or ""),
        template=hsm_pb2.DerivedKeyTemplate(
            label=a.label or "",
            algorithm=names.key_algorithm(a.algorithm),  # type: ignore[arg-type]
            extractable=a.extractable,
            persistent=a.persistent,
        ),
        return_value=a.return_value,
    )
    data = bytes.fromhex(a.data or "")
    if a.mechanism == "ecdh":
        request.ecdh.SetInParent()
        request.ecdh.peer_public_key = _peer_key(a.peer_key)
    elif a.mechanism == "aes-ecb-encrypt-data":
        request.aes_ecb_encrypt_data.SetInParent()
        request.aes_ecb_encrypt_data.data = data
    else:
        request.aes_cbc_encrypt_data.SetInParent()
        request.aes_cbc_encrypt_data.data = data
        request.aes_cbc_encrypt_data.iv = bytes.fromhex(a.iv or "")
    response = ctx.client().derive(request)
    if ctx.json:
        print_json(to_dict(response))
    else:
        rows = [("label", response.key.label), ("uri", response.key.uri),
                ("algorithm", _alg(response.key.algorithm))]  # fmt: skip
        if response.value:
            rows.append(("value (hex)", response.value.hex()))
        print_table(["FIELD", "VALUE"], rows)
    return EXIT_OK


def cmd_keygen(ctx: Context) -> int:
    a = ctx.args
    key = ctx.client().generate_key(
        a.hsm_key, a.alg, token=a.token or "", ephemeral=a.ephemeral, extractable=a.extractable
    )
    if ctx.json:
        print_json(to_dict(key))
    else:
        print_table(["LABEL", "ALGORITHM", "URI"], [(key.label, _alg(key.algorithm), key.uri)])
    return EXIT_OK


KEY_HELP = "KEY: a label, a pkcs11: URI or id:HEX."


def _key_argument(parser: argparse.ArgumentParser, text: str = "the HSM key") -> None:
    """The HSM key is a positional KEY: ``--key`` is the connection's client key (grpcurl)."""
    parser.add_argument("hsm_key", metavar="KEY", help=text)


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "keys", parents=[common], formatter_class=FMT, help="list HSM keys",
        description="List the HSM keys the caller may use (never key material).",
        epilog="example:\n  hwgate keys --label 'signer-*' --json",
    )  # fmt: skip
    p.add_argument("--token")
    p.add_argument("--label", metavar="PATTERN", help="fnmatch pattern on the label")
    p.add_argument(
        "--page-size", type=int, default=0, metavar="N",
        help="keys per ListKeys call (default: the daemon's); all pages are listed",
    )  # fmt: skip
    p.set_defaults(func=cmd_keys)

    key = sub.add_parser("key", help="one HSM key").add_subparsers(
        dest="key_command", metavar="{pub}", required=True
    )
    p = key.add_parser(
        "pub", parents=[common], formatter_class=FMT, help="a key's public half",
        description=f"Print a key's public key. {KEY_HELP}",
        epilog="example:\n  hwgate key pub signer-p256 --pem > signer.pub.pem",
    )  # fmt: skip
    _key_argument(p)
    p.add_argument("--token")
    p.add_argument("--pem", action="store_true", help="print PEM only")
    p.set_defaults(func=cmd_key_pub)

    p = sub.add_parser(
        "sign", parents=[common], formatter_class=FMT, help="sign a file with an HSM key",
        description="Sign a file with the HSM key KEY. The file is hashed here with the\n"
        "algorithm's hash unless --digest says it already is the digest (HMAC: the data\n"
        f"itself is sent). The DER/raw signature goes to --out or stdout.\n{KEY_HELP}\n"
        f"ALG: {', '.join(SIG_CHOICES)}",
        epilog="example:\n"
        "  hwgate sign signer-p256 --alg ecdsa-sha256 --in doc.pdf --out doc.sig",
    )  # fmt: skip
    _key_argument(p)
    p.add_argument("--token")
    p.add_argument("--alg", required=True, metavar="ALG", choices=SIG_CHOICES)
    p.add_argument("--in", dest="input", required=True, metavar="FILE", help="input, - = stdin")
    p.add_argument("--digest", action="store_true", help="the input is the digest")
    p.add_argument("--out", metavar="FILE")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser(
        "derive", parents=[common], formatter_class=FMT, help="derive a key in the HSM",
        description="Derive a new key inside the HSM from the base key KEY (ECDH or AES\n"
        f"diversification). {KEY_HELP}\nMECHANISM: {', '.join(DERIVE_CHOICES)}",
        epilog="examples:\n  hwgate derive ecdh-p256 --mechanism ecdh --peer-key peer.pem "
        "--algorithm aes-256 --extractable --return-value\n"
        "  hwgate derive activation-master --mechanism aes-ecb-encrypt-data "
        "--data 00112233445566778899aabbccddeeff --label code-1",
    )  # fmt: skip
    _key_argument(p, "the base key")
    p.add_argument("--token")
    p.add_argument("--mechanism", required=True, choices=DERIVE_CHOICES)
    p.add_argument("--peer-key", metavar="FILE", help="ECDH peer public key (PEM, DER or point)")
    p.add_argument("--data", metavar="HEX")
    p.add_argument("--iv", metavar="HEX")
    p.add_argument("--label", help="the derived key's label")
    p.add_argument("--algorithm", default="aes-256", choices=KEY_CHOICES)
    p.add_argument("--extractable", action="store_true")
    p.add_argument("--persistent", action="store_true")
    p.add_argument("--return-value", action="store_true")
    p.set_defaults(func=cmd_derive)

    p = sub.add_parser(
        "keygen", parents=[common], formatter_class=FMT, help="generate a key in the HSM",
        description="Generate a key pair or secret key labelled KEY.\n"
        f"ALG: {', '.join(KEY_CHOICES)}",
        epilog="example:\n  hwgate keygen tmp-signer --alg ec-p256 --ephemeral",
    )  # fmt: skip
    _key_argument(p, "the new key's label")
    p.add_argument("--alg", required=True, choices=KEY_CHOICES)
    p.add_argument("--token")
    p.add_argument("--ephemeral", action="store_true", help="session object (gone at restart)")
    p.add_argument("--extractable", action="store_true")
    p.set_defaults(func=cmd_keygen)
