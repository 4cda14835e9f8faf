"""hwgate.v1.HsmService: sign, derive and manage keys in the configured PKCS#11 tokens.

Each RPC reads its request, asks ``KeyAccess`` for the key (policy by the
resolved key's label), calls the token's ``HsmPool`` and audits the act with
its outcome. Errors leave through ``@unary``/``@stream`` as status + reason.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from typing import Any

from hwgate.v1 import common_pb2, hsm_pb2, hsm_pb2_grpc
from hwgated import errors
from hwgated.api import hsm_convert, key_pages
from hwgated.api.hsm_access import (
    ANY_CLASSES,
    SIGN_CLASSES,
    KeyAccess,
    ResolvedKey,
    annotated,
)
from hwgated.api.hsm_signing import audit_sign, check_key_type, sign_input
from hwgated.api.hsm_stream import StreamSigner
from hwgated.api.hsm_wrap import KeyWrapping
from hwgated.auth.identity import current_caller
from hwgated.auth.policy import PolicyHolder
from hwgated.edge.audited import audited, outcome
from hwgated.edge.refusals import mark_audited
from hwgated.edge.status import stream, unary
from hwgated.hsm import (
    DerivedKey,
    HsmPool,
    KeyAlgorithm,
    KeyClass,
    KeyPairSpec,
    KeyRef,
)
from hwgated.patterns import caller_globs

Context = Any  # grpc.aio.ServicerContext


def pem(der: bytes) -> str:
    """PEM "PUBLIC KEY" armour around a DER SubjectPublicKeyInfo."""
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join(["-----BEGIN PUBLIC KEY-----", *lines, "-----END PUBLIC KEY-----", ""])


class HsmServicer(hsm_pb2_grpc.HsmServiceServicer):
    def __init__(self, pools: Mapping[str, HsmPool], policy: PolicyHolder) -> None:
        self._policy = policy
        self._pools = pools
        self._access = KeyAccess(pools, policy)
        self._wrapping = KeyWrapping(self._access, policy)

    @unary
    async def ListKeys(
        self, request: hsm_pb2.ListKeysRequest, context: Context
    ) -> hsm_pb2.ListKeysResponse:
        role = current_caller().role
        policy = self._policy.current
        (pattern,) = caller_globs([request.label_pattern or "*"], "label_pattern")
        size = key_pages.page_size(request.page_size)
        list_filter = key_pages.ListFilter(request.token, request.label_pattern)
        cursor = key_pages.decode(request.page_token, list_filter) if request.page_token else None
        keys = []
        for token, pool in self._access.pools(request.token):
            if cursor is not None and cursor.passes(token):
                continue  # every key of this token was on earlier pages
            with annotated(token):
                infos = await pool.list_keys()
            for info in infos:
                if pattern.match(info.label) and policy.allows_key(role, info.label):
                    keys.append(hsm_convert.key_info(info, token, pool.config.token_label))
        page = key_pages.cut(keys, size, cursor, list_filter)
        return hsm_pb2.ListKeysResponse(keys=page.keys, next_page_token=page.next_page_token)

    @unary
    async def GetPublicKey(
        self, request: hsm_pb2.GetPublicKeyRequest, context: Context
    ) -> hsm_pb2.GetPublicKeyResponse:
        key = await self._access.resolve(request.key, ANY_CLASSES)
        if key.info.key_type not in (KeyAlgorithm.RSA, KeyAlgorithm.EC):
            raise errors.AlgorithmMismatch(f"key {key.label!r} is not an asymmetric key")
        # Without a class, so the lookup may use the public object of a pair.
        ref = KeyRef(label=key.ref.label, id=key.ref.id)
        with annotated(key.token, key.label):
            der = await key.pool.get_public_key(ref)
        info = key.message()
        return hsm_pb2.GetPublicKeyResponse(
            der=der, pem=pem(der), algorithm=info.algorithm, key=info
        )

    @unary
    async def Sign(
        self, request: hsm_pb2.HsmServiceSignRequest, context: Context
    ) -> hsm_pb2.HsmServiceSignResponse:
        algorithm = hsm_convert.sign_algorithm(request.algorithm)
        data = sign_input(algorithm, request)
        name = hsm_convert.ref_text(request.key)
        try:
            key = await self._access.resolve(request.key, SIGN_CLASSES)
            name = key.label
            check_key_type(algorithm, key.info)
            with annotated(key.token, key.label):
                signature = await key.pool.sign(key.ref, algorithm, data)
        except BaseException as exc:
            audit_sign(name, algorithm, (data,), outcome(exc))
            mark_audited(exc)
            raise
        audit_sign(name, algorithm, (data,), "ok")
        return hsm_pb2.HsmServiceSignResponse(signature=signature, key_uri=key.uri)

    @stream
    async def SignStream(
        self, request_iterator: AsyncIterator[hsm_pb2.SignStreamRequest], context: Context
    ) -> AsyncIterator[hsm_pb2.SignStreamResponse]:
        async for response in StreamSigner(self._access).run(request_iterator):
            yield response

    @unary
    async def Derive(
        self, request: hsm_pb2.DeriveRequest, context: Context
    ) -> hsm_pb2.DeriveResponse:
        template = request.template
        case = request.WhichOneof("mechanism")
        if case is None:
            raise errors.InvalidArgument("a mechanism must be set", field="mechanism")
        ecdh = case == "ecdh"
        mechanism = "ECDH" if ecdh else hsm_convert.diversify_mechanism(case).value
        _check_parameters(request, case)
        _check_template(template, request.return_value)
        base = await self._access.resolve(request.base_key, ANY_CLASSES, field="base_key")
        _check_base(base, ecdh)
        if request.return_value:
            self._access.check_export_derived(base.label)
        if template.persistent:
            # A persistent derived key is a new name on the token: the create grant.
            self._access.check_create(template.label)
        with audited(
            "hsm.derive",
            key=base.label,
            mechanism=mechanism,
            new_key=template.label or None,
            persistent=template.persistent,
            value_returned=request.return_value,
        ):
            with annotated(base.token, template.label or base.label):
                derived = await self._derive(base, request, ecdh)
            try:
                return await self._derive_response(base, derived, request)
            finally:
                derived.wipe()

    async def _derive(
        self, base: ResolvedKey, request: hsm_pb2.DeriveRequest, ecdh: bool
    ) -> DerivedKey:
        template = request.template
        length = hsm_convert.DERIVED_KEY_LENGTHS.get(template.algorithm)
        options: dict[str, Any] = dict(
            label=template.label or None,
            extractable=template.extractable,
            token_object=template.persistent,
        )
        if ecdh:
            peer = request.ecdh.peer_public_key
            return await base.pool.derive_ecdh(base.ref, peer, key_length=length or 32, **options)
        if request.HasField("aes_cbc_encrypt_data"):
            case, data, iv = (
                "aes_cbc_encrypt_data",
                request.aes_cbc_encrypt_data.data,
                request.aes_cbc_encrypt_data.iv,
            )
        else:
            case, data, iv = "aes_ecb_encrypt_data", request.aes_ecb_encrypt_data.data, b""
        return await base.pool.derive_diversified(
            base.ref,
            hsm_convert.diversify_mechanism(case),
            data,
            iv or None,
            key_length=length,
            **options,
        )

    async def _derive_response(
        self, base: ResolvedKey, derived: DerivedKey, request: hsm_pb2.DeriveRequest
    ) -> hsm_pb2.DeriveResponse:
        template = request.template
        if derived.ref is not None:
            info = await base.pool.describe(derived.ref, (KeyClass.SECRET,))
            key = hsm_convert.key_info(info, base.token, base.pool.config.token_label)
        else:
            key = hsm_pb2.KeyInfo(
                token=base.token,
                key_class=hsm_pb2.KEY_CLASS_SECRET_KEY,
                algorithm=_aes_algorithm(derived.key_length),
                size_bits=derived.key_length * 8,
                extractable=template.extractable,
                sensitive=not template.extractable,
                persistent=False,
            )
        response = hsm_pb2.DeriveResponse(key=key)
        if request.return_value and derived.value is not None:
            response.value = bytes(derived.value)
        return response

    @unary
    async def GenerateKey(
        self, request: hsm_pb2.GenerateKeyRequest, context: Context
    ) -> hsm_pb2.GenerateKeyResponse:
        if not request.label:
            raise errors.InvalidArgument("label is required", field="label")
        spec = hsm_convert.key_spec(request.algorithm)
        usages = hsm_convert.usages(request.usages)
        token, pool = self._access.pool(request.token)
        if request.ephemeral and pool.config.workers > 1:
            raise errors.InvalidArgument(
                "ephemeral keys need a token with one worker (a session object lives in "
                "one worker process only)",
                field="ephemeral",
            )
        if request.ephemeral:
            self._access.check_key(request.label)
        else:
            self._access.check_create(request.label)
        with (
            audited(
                "hsm.generate",
                key=request.label,
                algorithm=common_pb2.KeyAlgorithm.Name(request.algorithm),
                extractable=request.extractable,
            ),
            annotated(token, request.label),
        ):
            options: dict[str, Any] = dict(
                id=request.id or None, token_object=not request.ephemeral
            )
            if usages is not None:
                options["usage"] = usages
            if isinstance(spec, KeyPairSpec):
                if request.extractable:
                    raise errors.InvalidArgument(
                        "private keys are never extractable", field="extractable"
                    )
                info = await pool.generate_key_pair(request.label, spec, **options)
            else:
                info = await pool.generate_secret_key(
                    request.label, spec, extractable=request.extractable, **options
                )
        return hsm_pb2.GenerateKeyResponse(
            key=hsm_convert.key_info(info, token, pool.config.token_label)
        )

    @unary
    async def DeleteKey(
        self, request: hsm_pb2.DeleteKeyRequest, context: Context
    ) -> hsm_pb2.DeleteKeyResponse:
        key = await self._access.resolve(request.key, ANY_CLASSES)
        # Label and id, no class: both halves of a pair and its certificate.
        ref = KeyRef(label=key.ref.label, id=key.ref.id)
        with audited("hsm.delete", key=key.label) as extra, annotated(key.token, key.label):
            count = await key.pool.delete_key(ref)
            extra["deleted_objects"] = count
        return hsm_pb2.DeleteKeyResponse(deleted_objects=count)

    @unary
    async def WrapKey(
        self, request: hsm_pb2.WrapKeyRequest, context: Context
    ) -> hsm_pb2.WrapKeyResponse:
        return await self._wrapping.wrap(request)

    @unary
    async def UnwrapKey(
        self, request: hsm_pb2.UnwrapKeyRequest, context: Context
    ) -> hsm_pb2.UnwrapKeyResponse:
        return await self._wrapping.unwrap(request)

    @unary
    async def RewrapForPeer(
        self, request: hsm_pb2.RewrapForPeerRequest, context: Context
    ) -> hsm_pb2.RewrapForPeerResponse:
        return await self._wrapping.rewrap_for_peer(request)


def _check_parameters(request: hsm_pb2.DeriveRequest, case: str) -> None:
    """INVALID_ARGUMENT for a mechanism case without its input, before any key lookup."""
    if case == "ecdh":
        if not request.ecdh.peer_public_key:
            raise errors.InvalidArgument("ECDH needs peer_public_key", field="ecdh.peer_public_key")
    elif not getattr(request, case).data:
        raise errors.InvalidArgument("diversification needs data", field=f"{case}.data")


def _check_template(template: hsm_pb2.DerivedKeyTemplate, return_value: bool) -> None:
    """Refuse templates whose key would be useless or that this gateway cannot honour."""
    if template.algorithm not in (
        common_pb2.KEY_ALGORITHM_UNSPECIFIED,
        *hsm_convert.DERIVED_KEY_LENGTHS,
    ):
        raise errors.InvalidArgument(
            "derived keys are AES-128 or AES-256", field="template.algorithm"
        )
    if template.id:
        raise errors.InvalidArgument("template.id is not supported", field="template.id")
    if return_value and not template.extractable:
        raise errors.InvalidArgument(
            "return_value needs an extractable template", field="template.extractable"
        )
    if not template.persistent and not return_value:
        raise errors.InvalidArgument(
            "a derived session key that is not returned would be lost", field="template.persistent"
        )
    if template.persistent and not template.label and not return_value:
        raise errors.InvalidArgument(
            "a persistent derived key needs a label", field="template.label"
        )


def _check_base(base: ResolvedKey, ecdh: bool) -> None:
    """ALGORITHM_MISMATCH unless the base key fits the mechanism (EC private / AES secret)."""
    if ecdh:
        ok = base.info.key_type is KeyAlgorithm.EC and base.info.key_class is KeyClass.PRIVATE
    else:
        ok = base.info.key_type is KeyAlgorithm.AES
    if not ok:
        needed = "an EC private key" if ecdh else "an AES key"
        raise errors.AlgorithmMismatch(f"this mechanism needs {needed}, not {base.label!r}")


def _aes_algorithm(length: int) -> common_pb2.KeyAlgorithm:
    return {16: common_pb2.KEY_ALGORITHM_AES_128, 32: common_pb2.KEY_ALGORITHM_AES_256}.get(
        length, common_pb2.KEY_ALGORITHM_UNSPECIFIED
    )
