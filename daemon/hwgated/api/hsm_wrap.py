"""HsmService WrapKey, UnwrapKey and RewrapForPeer: requests in, policy, pool call, audit.

Authorization has two layers: the keys must be usable by the caller
(``KeyAccess.resolve``, the ``[[policy.keys]]`` rules: a hidden key is
KEY_NOT_FOUND), and the wrapping itself must be granted by a ``[[policy.wrap]]``
rule (``hwgated.auth.wrap_policy``). Every call is audited with its outcome,
refusals included; records name keys by label and blobs only by a short
SHA-256 prefix (a wrapped key is escrow material: a record never carries it).
"""

from __future__ import annotations

import hashlib

from hwgate.v1 import common_pb2, hsm_pb2
from hwgated import errors
from hwgated.api import hsm_convert
from hwgated.api.hsm_access import KeyAccess, ResolvedKey, annotated
from hwgated.auth import wrap_policy
from hwgated.auth.identity import current_caller
from hwgated.auth.policy import PolicyHolder
from hwgated.edge.audited import audited
from hwgated.hsm import KeyAlgorithm, KeyClass, KeyPairSpec, KeyUsage, SecretKeySpec, WrapMechanism

MAX_WRAPPED_BYTES = 16 * 1024  # an RSA-4096 PKCS#8 wraps to under 2.5 KiB
MAX_PEER_KEY_BYTES = 1024
_WRAPPABLE = (KeyClass.PRIVATE, KeyClass.SECRET)
_WRAPPING = (KeyClass.SECRET,)
_DEFAULT_USAGES = {
    KeyAlgorithm.AES: (KeyUsage.ENCRYPT, KeyUsage.DECRYPT),
    KeyAlgorithm.GENERIC_SECRET: (KeyUsage.SIGN, KeyUsage.VERIFY),
}


def short_hash(data: bytes) -> str:
    """8 hex digits of SHA-256: enough to match a record to a blob, nothing more."""
    return hashlib.sha256(data).hexdigest()[:8]


def mechanism(value: int, field: str = "mechanism") -> WrapMechanism:
    """The HSM layer's WrapMechanism of a proto value (unset = AES_KEY_WRAP_PAD)."""
    if value in (hsm_pb2.WRAP_MECHANISM_UNSPECIFIED, hsm_pb2.WRAP_MECHANISM_AES_KEY_WRAP_PAD):
        return WrapMechanism.AES_KEY_WRAP_PAD
    raise errors.InvalidArgument("unknown wrap mechanism", field=field)


def key_spec(value: int, field: str) -> KeyPairSpec | SecretKeySpec:
    """The key type a blob holds, from a proto KeyAlgorithm (required)."""
    try:
        return hsm_convert.key_spec(value)
    except errors.InvalidArgument:
        raise errors.InvalidArgument(
            "a key algorithm (RSA_2048/3072/4096, EC_P256/P384, AES_128/256, GENERIC_SECRET)"
            " is required",
            field=field,
        ) from None


def check_blob(blob: bytes, field: str = "wrapped_key") -> None:
    if not 0 < len(blob) <= MAX_WRAPPED_BYTES:
        raise errors.InvalidArgument(
            f"{field} must be 1 to {MAX_WRAPPED_BYTES} bytes", field=field, max=MAX_WRAPPED_BYTES
        )


def default_usages(spec: KeyPairSpec | SecretKeySpec) -> tuple[KeyUsage, ...]:
    if isinstance(spec, KeyPairSpec):
        return (KeyUsage.SIGN,)
    key_type = (
        KeyAlgorithm.GENERIC_SECRET if spec is SecretKeySpec.GENERIC_SECRET else KeyAlgorithm.AES
    )
    return _DEFAULT_USAGES[key_type]


class KeyWrapping:
    """The three wrapping RPCs of one HsmServicer."""

    def __init__(self, access: KeyAccess, policy: PolicyHolder) -> None:
        self._access = access
        self._policy = policy

    def _check(self, operation: str, key: str | None, wrapping: ResolvedKey) -> None:
        rules = self._policy.current.config.wrap
        wrap_policy.check_wrap(rules, operation, current_caller().role, key, wrapping.label)

    async def _wrapping_key(self, request_ref: hsm_pb2.KeyRef) -> ResolvedKey:
        return await self._access.resolve(request_ref, _WRAPPING, field="wrapping_key")

    async def wrap(self, request: hsm_pb2.WrapKeyRequest) -> hsm_pb2.WrapKeyResponse:
        mech = mechanism(request.mechanism)
        with audited("hsm.wrap", mechanism=mech.value) as extra:
            extra.update(
                key=hsm_convert.ref_text(request.key),
                wrapping_key=hsm_convert.ref_text(request.wrapping_key),
            )
            key = await self._access.resolve(request.key, _WRAPPABLE, field="key")
            extra["key"] = key.label
            # Not marked for escrow (policy or token): refused before the wrapping key
            # is even looked at, the same answer whatever the caller asked to wrap under.
            wrap_policy.check_marked(self._policy.current.config.wrap, key.label)
            if key.info.extractable is False:
                raise errors.KeyNotEscrowable(
                    f"key {key.label!r} is not extractable: it can never be wrapped out",
                    key=key.label,
                )
            wrapping = await self._wrapping_key(request.wrapping_key)
            extra["wrapping_key"] = wrapping.label
            _same_token(key, wrapping)
            self._check(wrap_policy.WRAP, key.label, wrapping)
            with annotated(key.token, key.label):
                blob = await key.pool.wrap_key(key.ref, wrapping.ref, mech)
            extra["wrapped_sha256"] = short_hash(blob)
        return hsm_pb2.WrapKeyResponse(
            wrapped_key=blob,
            key=key.message(),
            wrapping_key_uri=wrapping.uri,
            mechanism=hsm_pb2.WRAP_MECHANISM_AES_KEY_WRAP_PAD,
        )

    async def unwrap(self, request: hsm_pb2.UnwrapKeyRequest) -> hsm_pb2.UnwrapKeyResponse:
        mech = mechanism(request.mechanism)
        template = request.template
        if not template.label:
            raise errors.InvalidArgument("template.label is required", field="template.label")
        spec = key_spec(template.algorithm, "template.algorithm")
        check_blob(request.wrapped_key)
        usages = hsm_convert.usages(template.usages) or default_usages(spec)
        with audited(
            "hsm.unwrap",
            mechanism=mech.value,
            new_key=template.label,
            key_algorithm=common_pb2.KeyAlgorithm.Name(template.algorithm),
            persistent=not template.ephemeral,
            extractable=template.extractable,
            wrapped_sha256=short_hash(request.wrapped_key),
        ) as extra:
            extra["wrapping_key"] = hsm_convert.ref_text(request.wrapping_key)
            wrapping = await self._wrapping_key(request.wrapping_key)
            extra["wrapping_key"] = wrapping.label
            if template.ephemeral and wrapping.pool.config.workers > 1:
                raise errors.InvalidArgument(
                    "ephemeral keys need a token with one worker", field="template.ephemeral"
                )
            self._check(wrap_policy.UNWRAP, template.label, wrapping)
            if template.ephemeral:
                self._access.check_key(template.label)
            else:
                self._access.check_create(template.label)
            with annotated(wrapping.token, template.label):
                info = await wrapping.pool.unwrap_key(
                    wrapping.ref,
                    request.wrapped_key,
                    spec,
                    label=template.label,
                    id=template.id or None,
                    usage=usages,
                    extractable=template.extractable,
                    token_object=not template.ephemeral,
                    mechanism=mech,
                )
        key = hsm_convert.key_info(info, wrapping.token, wrapping.pool.config.token_label)
        return hsm_pb2.UnwrapKeyResponse(key=key)

    async def rewrap_for_peer(
        self, request: hsm_pb2.RewrapForPeerRequest
    ) -> hsm_pb2.RewrapForPeerResponse:
        mech = mechanism(request.mechanism)
        spec = key_spec(request.key_algorithm, "key_algorithm")
        check_blob(request.wrapped_key)
        peer = request.peer_public_key
        if not 0 < len(peer) <= MAX_PEER_KEY_BYTES:
            raise errors.InvalidArgument(
                "peer_public_key must be an EC point or SPKI", field="peer_public_key"
            )
        with audited(
            "hsm.rewrap_for_peer",
            mechanism=mech.value,
            key_algorithm=common_pb2.KeyAlgorithm.Name(request.key_algorithm),
            wrapped_sha256=short_hash(request.wrapped_key),
            peer_key_sha256=short_hash(peer),
        ) as extra:
            extra["wrapping_key"] = hsm_convert.ref_text(request.wrapping_key)
            wrapping = await self._wrapping_key(request.wrapping_key)
            extra["wrapping_key"] = wrapping.label
            self._check(wrap_policy.REWRAP, None, wrapping)
            with annotated(wrapping.token, wrapping.label):
                blob, hsm_public = await wrapping.pool.rewrap_for_peer(
                    wrapping.ref, request.wrapped_key, spec, peer, mechanism=mech
                )
        return hsm_pb2.RewrapForPeerResponse(
            wrapped_key=blob,
            hsm_public_key=hsm_public,
            kdf=hsm_pb2.TRANSPORT_KDF_ECDH_NULL_AES_ECB_SHA256,
            mechanism=hsm_pb2.WRAP_MECHANISM_AES_KEY_WRAP_PAD,
            key_algorithm=request.key_algorithm,
        )


def _same_token(key: ResolvedKey, wrapping: ResolvedKey) -> None:
    if key.pool is not wrapping.pool:
        raise errors.InvalidArgument(
            "the key and the wrapping key must be on the same token", field="wrapping_key.token"
        )
