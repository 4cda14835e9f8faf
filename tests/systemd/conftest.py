"""``make test-systemd`` only: these tests boot containers and take minutes.

They run when HWGATE_SYSTEMD_CACHE names the directory of the cached root file
systems (``SUITE/rootfs``, made by tests/systemd/make-rootfs; the Debian 13
wheelhouse in ``trixie/wheelhouse``, made by tests/systemd/make-wheelhouse);
the make target sets it after building dist/ and the host's wheelhouse. Plain
``make test`` skips them.

The container fixture ``machine`` is parametrized over the Debian releases in
HWGATE_SYSTEMD_SUITES (default ``bookworm,trixie``: Debian 12 and 13); a test
marked ``debian13`` runs on Debian 13 only. One container at a time: the
items are grouped by release, so each boots once per session.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from systemd_container import Container, booted

SYSTEMD_TIMEOUT = 900  # seconds: the first test also boots and installs
# The Debian 13 subset of the main suite runs inside in one go.
SUBSET_TIMEOUT = 1800

REPO = Path(__file__).resolve().parents[2]
SUITES = {"bookworm": "debian12", "trixie": "debian13"}
# Where the test venv and the checkout's tests live in the Debian 13 container.
SUITE_VENV = "/opt/hwgate-tests/venv"
SUITE_SRC = "/root/hwgate"


def selected_suites() -> list[str]:
    wanted = os.environ.get("HWGATE_SYSTEMD_SUITES", ",".join(SUITES))
    suites = [s.strip() for s in wanted.split(",") if s.strip()]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise pytest.UsageError(f"HWGATE_SYSTEMD_SUITES: unknown {unknown}; known {list(SUITES)}")
    return suites


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "systemd: boots hwgated.service in a container (slow)")
    config.addinivalue_line("markers", "debian13: only in the Debian 13 (trixie) container")


def _suite_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("machine") if callspec is not None else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    enabled = bool(os.environ.get("HWGATE_SYSTEMD_CACHE"))
    skip = pytest.mark.skip(reason="make test-systemd only (HWGATE_SYSTEMD_CACHE unset)")
    for item in items:
        if item.get_closest_marker("systemd") is None:
            continue
        if not enabled:
            item.add_marker(skip)
            continue
        item.add_marker(pytest.mark.timeout(SYSTEMD_TIMEOUT))
        if item.get_closest_marker("debian13") is not None and _suite_of(item) != "trixie":
            item.add_marker(pytest.mark.skip(reason="Debian 13 only (pcsc-lite 2.x and polkit)"))
    # After any shuffling (pytest-randomly): one release's tests together, in the
    # order of SUITES, so no container is booted twice.
    order = list(SUITES)
    items.sort(key=lambda i: order.index(s) if (s := _suite_of(i)) in order else -1)


def install_blocks(doc: Path) -> list[str]:
    """The ``bash`` blocks of the install doc, in order (``sh`` blocks are not run)."""
    return re.findall(r"^```bash\n(.*?)^```$", doc.read_text(), re.M | re.S)


def _own_wheels(directory: Path) -> Path:
    """Wheels of the four distributions, from this checkout (pure Python)."""
    sources = [REPO / d for d in ("clients", "daemon", "testbed", "apps")]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(directory), *map(str, sources)],
        check=True, timeout=300,
    )  # fmt: skip
    return directory


@pytest.fixture(scope="session", params=selected_suites(), ids=lambda s: SUITES[s])
def machine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    """A booted container of one Debian release, installed by docs/install.md."""
    suite: str = request.param
    cache = Path(os.environ["HWGATE_SYSTEMD_CACHE"])
    rootfs = cache / suite / "rootfs"
    dist = Path(os.environ.get("HWGATE_DIST", REPO / "dist"))
    # Debian 12 installs from the host's wheelhouse (same Python 3.11); Debian 13
    # from the cp313 one built in its own tree.
    wheelhouse = (
        cache / suite / "wheelhouse"
        if suite == "trixie"
        else Path(os.environ.get("HWGATE_WHEELHOUSE", REPO / ".venv" / "wheelhouse"))
    )
    assert (rootfs / ".complete").exists(), f"{rootfs}: tests/systemd/make-rootfs {suite}"
    assert list(dist.glob("hwgated-*.whl")), f"no hwgated wheel in {dist}: make dist"
    assert list(wheelhouse.glob("systemd_python-*.whl")), f"{wheelhouse}: no wheelhouse"
    log = tmp_path_factory.mktemp(f"nspawn-{suite}") / "console.log"
    binds = {
        dist: "/mnt/hwgate/dist",
        REPO / "systemd": "/mnt/hwgate/systemd",
        wheelhouse: "/mnt/wheelhouse",
    }
    if suite == "trixie":
        binds[REPO] = "/mnt/src"
        binds[_own_wheels(tmp_path_factory.mktemp("own-wheels"))] = "/mnt/own-wheels"
    name = f"hwgate-{SUITES[suite]}-{secrets.token_hex(3)}"
    with booted(rootfs, binds, log, name) as container:
        container.suite = suite
        for block in install_blocks(REPO / "docs" / "install.md"):
            container.run(
                block,
                cwd="/mnt/hwgate",
                env={"PIP_SOURCE": "--no-index --find-links /mnt/wheelhouse"},
                timeout=600,
            )
        container.run("useradd -M -G hwgate-clients kiosk && useradd -M outsider")
        yield container


@pytest.fixture(scope="session")
def suite_venv(machine: Container) -> Container:
    """Debian 13 only: the test bed and the test runners in SUITE_VENV (its Python
    3.13, --no-index from the wheelhouses), the checkout's tests in SUITE_SRC."""
    assert machine.suite == "trixie", "the test venv is made in the Debian 13 container"
    machine.run(
        f"/usr/bin/python3 -m venv {SUITE_VENV} && "
        f"{SUITE_VENV}/bin/pip install -q --no-index --find-links /mnt/wheelhouse "
        "--find-links /mnt/own-wheels hwgate 'hwgated[systemd]' hwgate-testbed hwgate-apps "
        "pytest pytest-timeout pytest-randomly hypothesis && "
        f"mkdir -p {SUITE_SRC}/testbed && "
        f"cp -r /mnt/src/tests /mnt/src/pyproject.toml {SUITE_SRC}/ && "
        f"cp /mnt/src/testbed/isolated {SUITE_SRC}/testbed/",
        timeout=600,
    )
    return machine
