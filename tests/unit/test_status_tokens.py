"""STATUS= names each token's state, and why a token that cannot serve is down."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwgated.hsm import HsmUnavailable
from hwgated.hsm.supervisor import PoolState
from hwgated.ops.status import summary


@dataclass
class _Pool:
    state: PoolState
    last_error: Any = None

    @property
    def healthy(self) -> bool:
        return self.state in (PoolState.READY, PoolState.DEGRADED)


class _NoPcsc:
    available = False


def test_status_line_says_which_token_is_down_and_why() -> None:
    pools: dict[str, Any] = {
        "testbed": _Pool(PoolState.READY),
        "vault": _Pool(PoolState.DOWN, HsmUnavailable("cannot load PKCS#11 module")),
    }
    line = summary(_NoPcsc(), pools)  # type: ignore[arg-type]
    assert line == "pcscd unavailable; hsm testbed READY, vault DOWN (HSM_UNAVAILABLE)"
