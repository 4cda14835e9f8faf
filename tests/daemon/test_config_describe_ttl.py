"""``[[hsm.token]] describe_ttl``: how long a key's label is trusted for authorization."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hwgated.config import ConfigError, parse_config
from hwgated.hsm import InvalidArgument, TokenConfig


def _load(tmp_path: Path, **extra: object) -> TokenConfig:
    (tmp_path / "pin").write_text("1234")
    table = {"name": "t", "module": "/m.so", "token_label": "x", "pin_file": "pin", **extra}
    raw = {"listen": [{"unix": str(tmp_path / "s.sock"), "role": "k"}],
           "policy": {"roles": {"k": {"allow": []}}}, "hsm": {"token": [table]}}  # fmt: skip
    return parse_config(raw, source="t.toml", base=tmp_path).tokens[0]


def test_the_default_is_thirty_seconds(tmp_path: Path) -> None:
    assert _load(tmp_path).describe_ttl == 30.0


@pytest.mark.parametrize("value", [0, 2, 0.5, 3600])
def test_a_finite_non_negative_ttl_is_taken(tmp_path: Path, value: float) -> None:
    assert _load(tmp_path, describe_ttl=value).describe_ttl == value


@pytest.mark.parametrize("value", [-1, -0.1, math.inf, math.nan])
def test_a_negative_or_infinite_ttl_is_refused_by_loader_and_pool(
    tmp_path: Path, value: float
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, describe_ttl=value)
    assert str(err.value) == "t.toml: hsm.token[0].describe_ttl: must be a finite number >= 0"
    direct = TokenConfig(name="t", module="/m.so", token_label="x", pin_file="p",
                         describe_ttl=value)  # fmt: skip
    with pytest.raises(InvalidArgument):
        direct.validate()
