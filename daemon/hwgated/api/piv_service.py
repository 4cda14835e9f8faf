"""hwgate.v1.PivService: card identity, PIN, proof of possession, card signatures.

Requests are validated here, card work runs as jobs on the reader's worker
(hwgated.pivapp), errors leave through the edge decorators. Every PIN
attempt, signature and authentication is audited, never with the PIN.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hwgate.v1 import common_pb2, piv_pb2, piv_pb2_grpc
from hwgated import errors
from hwgated.api import convert
from hwgated.api.piv_pin_change import PinChangeMixin
from hwgated.auth.identity import current_caller
from hwgated.auth.pinlimit import PinLimits
from hwgated.auth.policy import PolicyHolder
from hwgated.edge.audited import audited
from hwgated.edge.status import timeout_of, unary
from hwgated.pcsc.connection import Connection
from hwgated.pcsc.manager import CardManager
from hwgated.piv.certinfo import summarize
from hwgated.piv.commands import PinFormatError
from hwgated.piv.errors import PivParseError
from hwgated.piv.objects import PinUsage
from hwgated.piv.origin import OriginError, check_origin
from hwgated.piv.pinbuffer import PinBuffer
from hwgated.piv.schemes import SCHEMES, Scheme
from hwgated.piv.signing import MIN_CHALLENGE_LENGTH, origin_bound_digest
from hwgated.piv.slots import Algorithm, Slot
from hwgated.pivapp.info import CardInfo, read_card_info
from hwgated.pivapp.pin import verify_pin
from hwgated.pivapp.schemes import check_digest, scheme_named
from hwgated.pivapp.sign import CardSignature, sign_digest, slot_key

Context = Any  # grpc.aio.ServicerContext
T = TypeVar("T")

_SLOTS: dict[int, Slot] = {
    piv_pb2.SLOT_PIV_AUTHENTICATION: Slot.AUTHENTICATION,
    piv_pb2.SLOT_DIGITAL_SIGNATURE: Slot.SIGNATURE,
    piv_pb2.SLOT_KEY_MANAGEMENT: Slot.KEY_MANAGEMENT,
    piv_pb2.SLOT_CARD_AUTHENTICATION: Slot.CARD_AUTH,
}
_SLOT_ENUMS = {slot: value for value, slot in _SLOTS.items()}


def _sign_slot(value: int) -> Slot:
    """Sign's slot: 9C by default; 9A is Authenticate's alone (never a raw-digest oracle)."""
    if value == piv_pb2.SLOT_UNSPECIFIED:
        return Slot.SIGNATURE
    slot = _SLOTS.get(value)
    if slot is None:
        raise errors.InvalidArgument("unknown slot", field="slot")
    if slot is Slot.AUTHENTICATION:
        raise errors.InvalidArgument(
            "slot 9A is reserved for Authenticate (origin-bound digests only)", field="slot"
        )
    return slot


def _scheme_of(value: int) -> Scheme:
    """The card scheme for a SignatureAlgorithm value (proto3 enums may carry unknown numbers)."""
    try:
        name = common_pb2.SignatureAlgorithm.Name(value)
    except ValueError:
        raise errors.InvalidArgument("unknown algorithm", field="algorithm") from None
    return scheme_named(name.removeprefix("SIGNATURE_ALGORITHM_"))


def _authenticate_scheme(algorithm: Algorithm) -> Scheme:
    """9A signs the SHA-256 origin-bound digest: ECDSA, or PKCS#1 v1.5 with its DigestInfo."""
    return SCHEMES["RSA_PKCS1_SHA256" if algorithm.is_rsa else "ECDSA_SHA256"]


def _bound_digest(origin: str, challenge: bytes) -> bytes:
    """The digest 9A signs; INVALID_CHALLENGE for a non-origin or a short challenge."""
    try:
        check_origin(origin)
    except OriginError as exc:
        raise errors.InvalidChallenge(str(exc), field="origin") from None
    if len(challenge) < MIN_CHALLENGE_LENGTH:
        raise errors.InvalidChallenge(
            f"challenge must be at least {MIN_CHALLENGE_LENGTH} bytes", field="challenge"
        )
    return origin_bound_digest(origin, challenge)


def _pin_policy(info: CardInfo) -> piv_pb2.PinPolicy:
    if info.discovery is None:
        return piv_pb2.PinPolicy(application_pin=True, discovery_present=False)
    usage = info.discovery.pin_policy
    return piv_pb2.PinPolicy(
        application_pin=PinUsage.APPLICATION_PIN in usage,
        global_pin=PinUsage.GLOBAL_PIN in usage,
        occ=PinUsage.OCC in usage,
        vci=PinUsage.VCI in usage,
        global_pin_primary=info.discovery.global_pin_primary,
        discovery_present=True,
    )


def _card_info_response(info: CardInfo) -> piv_pb2.GetCardInfoResponse:
    response = piv_pb2.GetCardInfoResponse(
        reader=info.reader,
        atr=info.atr,
        pin_verified=info.pin_verified,
        pin_policy=_pin_policy(info),
    )
    if info.pin_retries_left is not None:
        response.pin_retries_left = info.pin_retries_left
    if info.chuid is not None:
        response.chuid.CopyFrom(_chuid(info))
    for slot, der in info.certificates:
        entry = response.certificates.add(slot=_SLOT_ENUMS[slot], der=der)
        with contextlib.suppress(PivParseError):  # unparseable: the DER is still returned
            entry.summary.CopyFrom(convert.certificate_summary(summarize(der)))
    return response


def _chuid(info: CardInfo) -> piv_pb2.Chuid:
    chuid = info.chuid
    assert chuid is not None
    message = piv_pb2.Chuid(signed=chuid.has_signature, raw=chuid.raw)
    if chuid.fascn is not None:
        message.fascn.CopyFrom(convert.fascn(chuid.fascn, chuid.fascn.encode()))
    if chuid.guid is not None:
        message.guid = str(chuid.guid)
    if chuid.expiry is not None:
        message.expiration_date.CopyFrom(convert.date(chuid.expiry))
    for name, why in chuid.unparsed:
        message.unparsed.add(field=_CHUID_FIELDS.get(name, name), reason=why)
    return message


# Chuid.unparsed names a field as the proto does (the parser says "expiry").
_CHUID_FIELDS = {"expiry": "expiration_date"}


class PivServicer(PinChangeMixin, piv_pb2_grpc.PivServiceServicer):
    def __init__(
        self,
        manager: CardManager,
        policy: PolicyHolder,
        verify_pin_per_minute: int | PinLimits = 10,
    ) -> None:
        self._policy = policy
        self._manager = manager
        # Per caller and per card; the daemon passes one instance to every listener's
        # servicers (and to CardService.Transmit), so no path has a budget of its own.
        self._pin_limits = (
            verify_pin_per_minute
            if isinstance(verify_pin_per_minute, PinLimits)
            else PinLimits(verify_pin_per_minute)
        )

    def _session_reader(self, session_id: str) -> str:
        """The session's reader, after the ownership and reader-policy checks."""
        if not session_id:
            raise errors.InvalidArgument("session_id is required", field="session_id")
        reader = self._manager.session(session_id, current_caller().owner).reader
        self._policy.current.check_reader(reader)
        return reader

    async def _in_session(
        self, session_id: str, fn: Callable[[Connection], T], context: Context
    ) -> T:
        return await self._manager.run(
            fn, owner=current_caller().owner, session_id=session_id, timeout=timeout_of(context)
        )

    @unary
    async def GetCardInfo(
        self, request: piv_pb2.GetCardInfoRequest, context: Context
    ) -> piv_pb2.GetCardInfoResponse:
        target = request.WhichOneof("target")
        if target == "session_id":
            session_id = request.session_id
            self._session_reader(session_id)
            info = await self._in_session(
                session_id, lambda link: read_card_info(link, session_id), context
            )
        elif target == "reader" and request.reader:
            self._policy.current.check_reader(request.reader)
            info = await self._manager.run(
                lambda link: read_card_info(link, None),
                owner=current_caller().owner,
                reader=request.reader,
                timeout=timeout_of(context),
            )
        else:
            raise errors.InvalidArgument("a reader or a session_id is required", field="target")
        return _card_info_response(info)

    @unary
    async def VerifyPin(
        self, request: piv_pb2.VerifyPinRequest, context: Context
    ) -> piv_pb2.VerifyPinResponse:
        # The request's own `pin` bytes are immutable and cannot be wiped; they live
        # only as long as the request message. The one copy we control is wiped.
        pin = PinBuffer(request.pin)
        try:
            with audited("piv.verify_pin") as record:
                try:
                    pin.check_format()
                except PinFormatError as exc:
                    raise errors.PinFormat(str(exc)) from None
                reader = self._session_reader(request.session_id)
                record["reader"] = reader
                try:
                    await self._pin_limits.acquire_on(
                        self._manager,
                        current_caller().owner,
                        reader,
                        "VerifyPin",
                        timeout_of(context),
                    )
                    session_id, allow_last = request.session_id, request.allow_last_attempt
                    record["retries_before"] = await self._in_session(
                        session_id,
                        lambda link: verify_pin(link, pin, allow_last, session_id),
                        context,
                    )
                except errors.HwgateError as exc:
                    record["retries_left"] = exc.metadata.get("retries_left")
                    raise
        finally:
            pin.abandon()
        # The job renewed the session at its end: it now lasts one ttl from here.
        ttl = self._manager.session(request.session_id, current_caller().owner).ttl
        return piv_pb2.VerifyPinResponse(session_expire_time=convert.timestamp(time.time() + ttl))

    @unary
    async def Authenticate(
        self, request: piv_pb2.AuthenticateRequest, context: Context
    ) -> piv_pb2.AuthenticateResponse:
        with audited("piv.authenticate", slot="9A", origin=request.origin[:256]) as record:
            digest = _bound_digest(request.origin, request.challenge)
            record["reader"] = self._session_reader(request.session_id)
            session_id = request.session_id

            def job(link: Connection) -> tuple[CardSignature, Scheme]:
                _, algorithm = slot_key(link, Slot.AUTHENTICATION)
                scheme = _authenticate_scheme(algorithm)
                signed = sign_digest(
                    link, Slot.AUTHENTICATION, scheme, digest, session_id, require_pin=True
                )
                return signed, scheme

            signed, scheme = await self._in_session(session_id, job, context)
            record["algorithm"] = scheme.name
        return piv_pb2.AuthenticateResponse(
            signature=signed.signature,
            algorithm=f"SIGNATURE_ALGORITHM_{scheme.name}",
            certificate=signed.certificate,
            digest=digest,
        )

    @unary
    async def Sign(
        self, request: piv_pb2.PivServiceSignRequest, context: Context
    ) -> piv_pb2.PivServiceSignResponse:
        with audited("piv.sign") as record:
            slot = _sign_slot(request.slot)
            record["slot"] = f"{slot:02X}"
            scheme = _scheme_of(request.algorithm)
            record["algorithm"] = scheme.name
            digest = bytes(request.digest)
            check_digest(scheme, digest)
            record["reader"] = self._session_reader(request.session_id)
            session_id = request.session_id
            signed = await self._in_session(
                session_id,
                lambda link: sign_digest(link, slot, scheme, digest, session_id),
                context,
            )
        return piv_pb2.PivServiceSignResponse(
            signature=signed.signature, certificate=signed.certificate
        )
