"""Every status word maps to its typed exception, once."""

from __future__ import annotations

import pytest

from hwgated.piv import errors
from hwgated.piv.apdu import ResponseApdu
from hwgated.piv.errors import check_sw


@pytest.mark.parametrize(
    ("sw", "cls"),
    [
        (0x6983, errors.PinBlocked),
        (0x6982, errors.SecurityStatusNotSatisfied),
        (0x6A82, errors.NotFound),
        (0x6A80, errors.IncorrectData),
        (0x6A86, errors.WrongParameters),
        (0x6A88, errors.ReferenceNotFound),
        (0x6A81, errors.FunctionNotSupported),
        (0x6700, errors.WrongLength),
        (0x6985, errors.ConditionsNotSatisfied),
        (0x6D00, errors.UnknownStatus),
        (0x6F00, errors.UnknownStatus),
        (0x6A84, errors.UnknownStatus),
    ],
)
def test_mapping(sw: int, cls: type[errors.PivError]) -> None:
    with pytest.raises(cls) as info:
        check_sw(ResponseApdu(b"", sw))
    assert info.value.sw == sw
    assert type(info.value) is cls


@pytest.mark.parametrize(("sw", "left"), [(0x63C0, 0), (0x63C3, 3), (0x63CF, 15), (0x6300, None)])
def test_invalid_pin_carries_retries(sw: int, left: int | None) -> None:
    with pytest.raises(errors.InvalidPin) as info:
        check_sw(ResponseApdu(b"", sw))
    assert info.value.retries_left == left
    assert info.value.sw == sw


def test_ok_is_silent() -> None:
    check_sw(ResponseApdu(b"data", 0x9000))  # must not raise
    assert errors.error_for_sw(0x9000) is None


def test_hierarchy() -> None:
    for cls in (errors.InvalidPin, errors.PinBlocked, errors.UnknownStatus):
        assert issubclass(cls, errors.PivError)
    assert issubclass(errors.PivParseError, ValueError)
    assert not issubclass(errors.PivError, errors.PivParseError)
