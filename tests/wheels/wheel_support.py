"""Build the project's wheels and install them into fresh virtualenvs, as a user would.

The development venv installs every distribution editable, straight from the
checkout, so it cannot notice a module or data file missing from a wheel, or a
distribution that only works because another one happens to be installed. These
helpers build real wheels from a copy of the sources (so a stale ``build/`` in
the checkout cannot leak into them) and install them into venvs outside the
checkout, without system site-packages, with ``--no-index``: the suite runs in
a network namespace without network (testbed/isolated), so the third-party
dependencies come from the wheelhouse ``make venv`` fills (.venv/wheelhouse).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# folder -> distribution name, in dependency order
DISTRIBUTIONS = {
    "clients": "hwgate",
    "daemon": "hwgated",
    "testbed": "hwgate-testbed",
    "apps": "hwgate-apps",
}
HARDWARE_DISTRIBUTIONS = {"pyscard", "python-pkcs11"}
PIP_TIMEOUT = 600.0
# Wheels of every third-party dependency (Makefile: $(WHEELHOUSE)).
DEPENDENCY_WHEELS = Path(os.environ.get("HWGATE_WHEELHOUSE", str(ROOT / ".venv" / "wheelhouse")))


@dataclass(frozen=True)
class Wheelhouse:
    """Where the wheels are."""

    ours: Path  # the four project wheels, built from the checkout for this session
    deps: Path  # every third-party dependency, as wheels


def _pip(*args: str | Path, offline: bool = False) -> None:
    """Run the development venv's pip (it drives installs into other venvs too)."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if offline:
        # Nothing but the wheelhouse: no configured index or find-links.
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    cmd = [sys.executable, "-m", "pip", *map(str, args)]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT, env=env, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr}")


def build_wheelhouse(work: Path) -> Wheelhouse:
    """Our wheels, built without build isolation (no network) from a copy of the
    sources, next to the dependency wheels ``make venv`` downloaded."""
    if not (DEPENDENCY_WHEELS / ".stamp").exists():
        raise AssertionError(
            f"no dependency wheels in {DEPENDENCY_WHEELS}: run `make venv` (it fills them)"
        )
    src, ours = work / "src", work / "ours"
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".mypy_cache")
    for folder in DISTRIBUTIONS:
        shutil.copytree(ROOT / folder, src / folder, ignore=junk)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", ours,
         *(src / folder for folder in DISTRIBUTIONS), offline=True)  # fmt: skip
    return Wheelhouse(ours, DEPENDENCY_WHEELS)


def fresh_venv(path: Path) -> Path:
    """A venv without pip and without system site-packages; returns its python."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120
    )
    cfg = (path / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg, cfg
    return path / "bin" / "python"


def install(python: Path, wheelhouse: Wheelhouse, *distributions: str) -> None:
    """Install *distributions* (and their dependencies) from the wheelhouse only."""
    _pip("--python", python, "install", "--no-index", "--find-links", wheelhouse.ours,
         "--find-links", wheelhouse.deps, *distributions, offline=True)  # fmt: skip


def installed(python: Path) -> set[str]:
    """Normalized names of the distributions installed in *python*'s venv."""
    code = (
        "import importlib.metadata as m, json, re\n"
        "print(json.dumps(sorted({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower()"
        " for d in m.distributions()})))"
    )
    return set(json.loads(run_checked([python, "-c", code], cwd=python.parent).stdout))


def clean_env(venv_bin: Path) -> dict[str, str]:
    """The environment for a process of the fresh venv: its bin first on PATH and
    nothing that could lead Python back into the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONNOUSERSITE"] = "1"
    return env


def run_checked(
    cmd: list[str | Path], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run *cmd* with the fresh venv's clean environment; fail with its output."""
    argv = [str(c) for c in cmd]
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=clean_env(Path(argv[0]).parent),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done
