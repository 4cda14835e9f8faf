"""Raw Transmit: which APDUs a caller may send, and how the permitted security ones count.

Without the policy's ``transmit_security`` permission a role may send only
APDUs that read (hwgated.piv.apdu_class); one restricted APDU refuses the whole
batch before anything reaches the card. With it, each security APDU is audited
as what it is (``card.transmit.verify``, with the PIN or key reference and the
status word, never the data field) and every VERIFY that carries data is one
PIN try against the same per-caller and per-card limits as PivService.VerifyPin,
and is refused (LAST_PIN_ATTEMPT) when it would spend the PIN's last retry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hwgated.auth.audit import audit
from hwgated.auth.identity import Caller
from hwgated.auth.pinlimit import PinLimits
from hwgated.auth.policy import Policy
from hwgated.errors import ApduNotPermitted, LastPinAttempt
from hwgated.pcsc.manager import CardManager
from hwgated.piv.apdu import CommandApdu, ResponseApdu
from hwgated.piv.apdu_class import ApduKind, classify, reference


@dataclass(frozen=True)
class FlaggedApdu:
    """A restricted APDU of a batch, by position."""

    index: int
    kind: ApduKind
    command: CommandApdu

    @property
    def pin_try(self) -> bool:
        """A VERIFY that presents a PIN (the status query was classed as a read)."""
        return self.kind.is_verify and bool(self.command.data)

    def fields(self) -> dict[str, object]:
        """What the audit may say about it: INS, CLA, reference; never the data."""
        return {
            "index": self.index,
            "ins": f"{self.command.ins:02X}",
            "cla": f"{self.command.cla:02X}",
            "reference": reference(self.command),
        }


def screen(commands: Sequence[CommandApdu], caller: Caller, policy: Policy) -> list[FlaggedApdu]:
    """The batch's restricted APDUs; ApduNotPermitted when the role may not send them."""
    flagged = []
    for index, command in enumerate(commands):
        kind = classify(command)
        if kind.restricted:
            flagged.append(FlaggedApdu(index, kind, command))
    if flagged and not policy.allows_transmit_security(caller.role):
        first = flagged[0]
        raise ApduNotPermitted(
            f"APDU {first.index} ({first.kind.value}, INS {first.command.ins:02X}) needs "
            "the transmit_security permission",
            index=first.index,
            ins=f"{first.command.ins:02X}",
            kind=first.kind.value,
        )
    return flagged


async def count_pin_tries(
    flagged: Sequence[FlaggedApdu],
    limits: PinLimits,
    manager: CardManager,
    owner: str,
    reader: str,
    timeout: float | None = None,
) -> None:
    """Take one PIN-limit token per VERIFY with data (RateLimited before the card sees any)."""
    for item in flagged:
        if item.pin_try:
            await limits.acquire_on(manager, owner, reader, "VERIFY", timeout)


SW_ONE_TRY_LEFT = 0x63C1
_NO_CHAINING = 0xEF


def status_query(command: CommandApdu) -> bytes:
    """The empty VERIFY asking after *command*'s PIN reference (spends no retry)."""
    return CommandApdu(command.cla & _NO_CHAINING, 0x20, 0x00, command.p2).encode()


def check_not_last_try(transmit: Callable[[bytes], bytes], item: FlaggedApdu) -> None:
    """LastPinAttempt when *item* would spend its PIN's last retry (asked just before it).

    Transmit has no allow_last_attempt: spending the last retry, which blocks the
    PIN when wrong, is PivService.VerifyPin's decision, made explicitly.
    """
    raw = transmit(status_query(item.command))
    if len(raw) >= 2 and int.from_bytes(raw[-2:], "big") == SW_ONE_TRY_LEFT:
        raise LastPinAttempt(
            f"APDU {item.index}: one PIN retry left; use VerifyPin with allow_last_attempt",
            index=item.index,
            retries_left=1,
        )


def _outcome(response: ResponseApdu) -> str:
    return "ok" if response.sw == 0x9000 or response.sw >> 8 == 0x61 else "CARD_ERROR"


def audit_flagged(
    flagged: Sequence[FlaggedApdu],
    reader: str,
    responses: Sequence[ResponseApdu] | None,
    failure: str | None = None,
) -> None:
    """One ``card.transmit.<kind>`` record per restricted APDU, with its status word."""
    for item in flagged:
        fields = item.fields()
        if responses is not None and item.index < len(responses):
            response = responses[item.index]
            audit(
                f"card.transmit.{item.kind.value}",
                _outcome(response),
                reader=reader,
                sw=f"{response.sw:04X}",
                **fields,
            )
        else:
            audit(
                f"card.transmit.{item.kind.value}", failure or "not_sent", reader=reader, **fields
            )
