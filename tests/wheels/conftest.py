"""One set of wheels per session: building them and fetching the dependency
wheels is the slow part (tens of seconds) shared by every test here."""

from __future__ import annotations

import pytest
from wheel_support import Wheelhouse, build_wheelhouse


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    return build_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))
