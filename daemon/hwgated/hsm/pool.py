"""HsmPool: N worker processes serving one token, seen from asyncio as one async API.

Why processes: python-pkcs11 initializes modules without OS locking, login is
per application, a module cannot be reloaded after C_Finalize, and a vendor
module can crash or hang. Each worker is its own application with one logged-in
session; a dead or hung worker is replaced and only its in-flight requests fail
(HsmWorkerLost).

This module is the public API: argument checks, the admin lock around object
changes, and the key descriptions used for authorization. The parts behind it:
``supervisor`` (starting, replacing and timing out workers; backoff; the
rejected-PIN memory; the pool state), ``dispatch`` (least-loaded dispatch with
interactive calls ahead of bulk work) and ``describe_cache``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from hwgated.hsm.algorithms import algorithm_spec, check_batch, check_sign_input
from hwgated.hsm.channel import WorkerChannel
from hwgated.hsm.config import TokenConfig
from hwgated.hsm.describe_cache import DescribeCache
from hwgated.hsm.dispatch import BULK_DEPTH, Dispatcher
from hwgated.hsm.errors import HsmUnavailable, HwgateError, InvalidArgument, KeyNotFound
from hwgated.hsm.keyref import KeyClass, KeyRef
from hwgated.hsm.supervisor import PoolState, WorkerSupervisor
from hwgated.hsm.types import (
    DerivedKey,
    DiversifyMechanism,
    KeyInfo,
    KeyPairSpec,
    KeyUsage,
    SecretKeySpec,
    SignAlgorithm,
    WrapMechanism,
)

__all__ = ["BATCH_UNIT", "BULK_DEPTH", "DESCRIBE_CLASSES", "SMALL_BATCH", "HsmPool", "PoolState"]

_E = TypeVar("_E", bound=enum.Enum)

BATCH_UNIT = 64  # a batch gets op_timeout per this many items
SMALL_BATCH = 4  # sign_many of at most this many items is interactive, not bulk
DESCRIBE_CLASSES = (KeyClass.PRIVATE, KeyClass.SECRET, KeyClass.PUBLIC)


class HsmPool:
    """Worker processes for one ``[[hsm.token]]``; every public method is a coroutine."""

    def __init__(
        self,
        config: TokenConfig,
        *,
        pipeline_depth: int = 4,
        start_timeout: float | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        on_state: Callable[[PoolState], None] | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self._workers = WorkerSupervisor(
            config,
            start_timeout=start_timeout or max(30.0, config.op_timeout),
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            on_state=on_state,
            on_capacity=lambda: self._dispatch.hand_out(),
            on_refuse=lambda error: self._dispatch.fail_waiters(error),
        )
        self._dispatch = Dispatcher(
            self._workers.slots, depth=pipeline_depth, refusal=self._workers.refusal
        )
        self._described = DescribeCache(config.describe_ttl)
        self._admin_lock = asyncio.Lock()

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start the workers in the background; use ``wait_ready`` to wait for them."""
        self._workers.start()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until every worker serves or the pool is DOWN/CLOSED, at most ``timeout``
        seconds; True when the pool serves (possibly DEGRADED) at the end."""
        return await self._workers.wait_ready(timeout)

    async def close(self) -> None:
        """Stop every worker (they log out as their session closes) and refuse new calls."""
        await self._workers.close()
        self._dispatch.fail_waiters(HsmUnavailable("the HSM pool is closed"))

    @property
    def state(self) -> PoolState:
        return self._workers.state

    @property
    def healthy(self) -> bool:
        """True when at least one worker serves (health SERVING)."""
        return self._workers.healthy

    @property
    def last_error(self) -> HwgateError | None:
        """Why the last worker start failed (safe to log and show), None once healthy."""
        return self._workers.last_error

    @property
    def start_failures(self) -> int:
        """Consecutive failed worker starts (0 once a worker is ready); drives the backoff."""
        return self._workers.start_failures

    @property
    def supervising(self) -> bool:
        """True while the tasks that start, replace and time out workers all run
        (the systemd watchdog's liveness probe for this pool)."""
        return self._workers.supervising

    def worker_pids(self) -> list[int]:
        """Pids of the workers currently serving (diagnostics, tests)."""
        return self._workers.worker_pids()

    # Views for white-box tests (tests/hsm reach the pipes and the bulk queue).
    @property
    def _slots(self) -> list[WorkerChannel | None]:
        return self._workers.slots

    @property
    def _bulk_waiters(self) -> Sequence[asyncio.Future[WorkerChannel]]:
        return self._dispatch.bulk_waiters

    # -- the API ---------------------------------------------------------------

    async def list_keys(self) -> list[KeyInfo]:
        """Every key on the token, described without key material."""
        result: list[KeyInfo] = await self._call("list_keys", (), retry=True)
        return result

    async def describe(
        self, ref: KeyRef | str, classes: tuple[KeyClass, ...] = DESCRIBE_CLASSES
    ) -> KeyInfo:
        """The one key ``ref`` selects among ``classes`` (searched in order), described.

        Callers authorize by the resolved key's label (a reference by id or URI
        names no label), so this runs before every key use: answers are cached
        for ``describe_ttl`` seconds and dropped whenever this pool creates or
        destroys objects, the same moments the workers drop their handle caches.
        The TTL bounds how long a change made outside the daemon goes unseen.
        """
        parsed = self._ref(ref)
        cache_key = (parsed, classes)
        info = self._described.get(cache_key)
        if info is None:
            info = await self._call("describe", (parsed, classes), retry=True)
            self._described.put(cache_key, info)
        return info

    async def get_public_key(self, ref: KeyRef | str) -> bytes:
        """DER SubjectPublicKeyInfo of an RSA or EC key."""
        result: bytes = await self._call("get_public_key", (self._ref(ref),), retry=True)
        return result

    async def sign(self, ref: KeyRef | str, algorithm: SignAlgorithm | str, data: bytes) -> bytes:
        """Sign a digest (HMAC: the data) with a private or secret key; DER for ECDSA."""
        alg = _algorithm(algorithm)
        check_sign_input(alg, data)
        args = (self._ref(ref), alg, bytes(data))
        result: bytes = await self._call("sign", args, retry=True)
        return result

    async def sign_many(
        self, ref: KeyRef | str, algorithm: SignAlgorithm | str, digests: Sequence[bytes]
    ) -> list[bytes]:
        """Sign a batch in one worker round trip; all-or-nothing."""
        alg = _algorithm(algorithm)
        items = [bytes(d) for d in digests]
        if not items:
            return []
        check_batch(alg, items)
        cost = max(1.0, len(items) / BATCH_UNIT)
        args = (self._ref(ref), alg, items)
        bulk = len(items) > SMALL_BATCH
        result: list[bytes] = await self._call("sign_many", args, cost=cost, bulk=bulk, retry=True)
        return result

    async def derive_ecdh(
        self,
        ref: KeyRef | str,
        peer_public: bytes,
        *,
        label: str | None = None,
        extractable: bool = False,
        token_object: bool = True,
        key_length: int = 32,
    ) -> DerivedKey:
        """ECDH (CKD_NULL) into a new AES key of ``key_length`` bytes.

        ``peer_public`` is an X9.62 point or a DER SubjectPublicKeyInfo. The value
        comes back only when ``extractable``; a non-token key is never kept.
        """
        kwargs = dict(
            label=label, extractable=extractable, token_object=token_object, key_length=key_length
        )
        return await self._derive(
            "derive_ecdh", (self._ref(ref), bytes(peer_public)), kwargs, token_object
        )

    async def derive_diversified(
        self,
        master_ref: KeyRef | str,
        mechanism: DiversifyMechanism | str,
        data: bytes,
        iv: bytes | None = None,
        *,
        label: str | None = None,
        extractable: bool = False,
        token_object: bool = True,
        key_length: int | None = None,
    ) -> DerivedKey:
        """AES key = AES-ECB/CBC(master, data); ``data`` a non-empty multiple of 16 bytes.

        ``key_length`` (bytes) defaults to min(len(data), 32) and may not exceed it.
        """
        mech = _enum(DiversifyMechanism, mechanism, "diversification mechanism")
        if not data or len(data) % 16:
            raise InvalidArgument("diversification data must be a non-empty multiple of 16 bytes")
        length = key_length if key_length is not None else min(len(data), 32)
        if length > len(data):
            raise InvalidArgument("key_length exceeds the diversification data length")
        if mech is DiversifyMechanism.AES_CBC and (iv is None or len(iv) != 16):
            raise InvalidArgument("AES_CBC diversification needs a 16-byte iv")
        kwargs = dict(
            label=label, extractable=extractable, token_object=token_object, key_length=length
        )
        args = (self._ref(master_ref), mech, bytes(data), None if iv is None else bytes(iv))
        return await self._derive("derive_diversified", args, kwargs, token_object)

    async def generate_key_pair(
        self,
        label: str,
        key_type: KeyPairSpec | str,
        *,
        id: bytes | None = None,  # the PKCS#11 attribute name
        usage: Iterable[KeyUsage | str] = (KeyUsage.SIGN,),
        token_object: bool = True,
    ) -> KeyInfo:
        """Generate a key pair; KeyExists if the label is taken. Returns the private key."""
        spec = _enum(KeyPairSpec, key_type, "key type")
        usages = tuple(_enum(KeyUsage, u, "usage") for u in usage)
        args = (label, spec, id, usages, token_object)
        async with self._admin_lock:
            info: KeyInfo = await self._call("generate_key_pair", args)
            self._broadcast_invalidate()
        return info

    async def generate_secret_key(
        self,
        label: str,
        key_type: SecretKeySpec | str,
        *,
        id: bytes | None = None,  # the PKCS#11 attribute name
        usage: Iterable[KeyUsage | str] | None = None,
        token_object: bool = True,
        extractable: bool = False,
    ) -> KeyInfo:
        """Generate an AES or generic (HMAC) secret key; KeyExists if the label is taken."""
        spec = _enum(SecretKeySpec, key_type, "key type")
        if usage is None:
            usage = _default_secret_usage(spec)
        usages = tuple(_enum(KeyUsage, u, "usage") for u in usage)
        args = (label, spec, id, usages, token_object, extractable)
        async with self._admin_lock:
            info: KeyInfo = await self._call("generate_secret_key", args)
            self._broadcast_invalidate()
        return info

    async def delete_key(self, ref: KeyRef | str) -> int:
        """Destroy every object the reference matches; the number destroyed."""
        async with self._admin_lock:
            try:
                count: int = await self._call("delete_key", (self._ref(ref),))
            finally:
                self._broadcast_invalidate()
        return count

    async def wrap_key(
        self,
        ref: KeyRef | str,
        wrapping_ref: KeyRef | str,
        mechanism: WrapMechanism = WrapMechanism.AES_KEY_WRAP_PAD,
    ) -> bytes:
        """C_WrapKey of a private or secret key under an AES wrapping key: the blob.

        KEY_NOT_ESCROWABLE when the token holds the key as not extractable."""
        args = (self._ref(ref), self._ref(wrapping_ref), WrapMechanism(mechanism))
        result: bytes = await self._call("wrap_key", args, retry=True)
        return result

    async def unwrap_key(
        self,
        wrapping_ref: KeyRef | str,
        wrapped: bytes,
        spec: KeyPairSpec | SecretKeySpec,
        *,
        label: str,
        id: bytes | None = None,  # the PKCS#11 attribute name
        usage: Iterable[KeyUsage | str] = (),
        extractable: bool = False,
        token_object: bool = True,
        mechanism: WrapMechanism = WrapMechanism.AES_KEY_WRAP_PAD,
    ) -> KeyInfo:
        """C_UnwrapKey into a new (sensitive) key; WRAPPED_KEY_INVALID for a blob that is
        no ``spec`` key under the wrapping key, KeyExists if the label is taken."""
        usages = tuple(_enum(KeyUsage, u, "usage") for u in usage)
        args = (self._ref(wrapping_ref), WrapMechanism(mechanism), bytes(wrapped), spec)
        kwargs = dict(
            label=label, key_id=id, usages=usages, extractable=extractable,
            token_object=token_object,
        )  # fmt: skip
        async with self._admin_lock:
            try:
                info: KeyInfo = await self._call("unwrap_key", args, kwargs)
            finally:
                self._broadcast_invalidate()
        return info

    async def rewrap_for_peer(
        self,
        wrapping_ref: KeyRef | str,
        wrapped: bytes,
        spec: KeyPairSpec | SecretKeySpec,
        peer_public: bytes,
        *,
        mechanism: WrapMechanism = WrapMechanism.AES_KEY_WRAP_PAD,
    ) -> tuple[bytes, bytes]:
        """Re-wrap an escrowed key for a peer in one worker operation (p11wrap.rewrap_for_peer):
        (the key wrapped under the transport key, the HSM's ephemeral public key DER).

        Only session objects are made, all destroyed before the reply (or with the
        worker's session if it dies), so a resend after a crash is safe."""
        args = (
            self._ref(wrapping_ref), WrapMechanism(mechanism), bytes(wrapped), spec,
            bytes(peer_public),
        )  # fmt: skip
        wrapped_out, public = await self._call("rewrap_for_peer", args, retry=True)
        return bytes(wrapped_out), bytes(public)

    async def _derive(
        self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], token_object: bool
    ) -> DerivedKey:
        if not token_object:
            # A session key is destroyed before the reply: nothing stays on the token,
            # so sending it again after a crash is safe. A token object is never resent.
            result: DerivedKey = await self._call(op, args, kwargs, retry=True)
            return result
        async with self._admin_lock:
            result = await self._call(op, args, kwargs)
            self._broadcast_invalidate()
        return result

    def _ref(self, ref: KeyRef | str) -> KeyRef:
        parsed = KeyRef.parse(ref) if isinstance(ref, str) else ref
        if parsed.token is not None and parsed.token != self._workers.token_label:
            raise KeyNotFound(f"the reference names token {parsed.token!r}, not this one")
        if parsed.token_serial is not None and self.config.token_serial not in (
            None,
            parsed.token_serial,
        ):
            raise KeyNotFound("the reference names another token serial")
        return parsed

    async def _call(
        self,
        op: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
        *,
        cost: float = 1.0,
        bulk: bool = False,
        retry: bool = False,
    ) -> Any:
        """Run ``op`` on a worker. ``retry`` only for idempotent requests (signing,
        reading): generating, deleting or deriving into the token is never resent."""
        budget = self.config.op_timeout * cost
        return await self._dispatch.call(
            op, args, kwargs or {}, budget=budget, bulk=bulk, retry=retry
        )

    def _broadcast_invalidate(self) -> None:
        self._described.clear()
        self._workers.broadcast("invalidate")


def _algorithm(value: SignAlgorithm | str) -> SignAlgorithm:
    algorithm_spec(value)  # raises InvalidArgument for unknown names
    return SignAlgorithm(value)


def _enum(cls: type[_E], value: Any, what: str) -> _E:
    try:
        return cls(value)
    except ValueError:
        raise InvalidArgument(f"unknown {what} {value!r}") from None


def _default_secret_usage(spec: SecretKeySpec) -> tuple[KeyUsage, ...]:
    if spec is SecretKeySpec.GENERIC_SECRET:
        return (KeyUsage.SIGN, KeyUsage.VERIFY)
    return (KeyUsage.ENCRYPT, KeyUsage.DECRYPT, KeyUsage.DERIVE)
