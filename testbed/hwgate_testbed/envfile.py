"""testbed.env: the environment a shell, a test or the daemon needs to reach the
test bed (`. DIR/testbed.env`). Holds paths only, never a PIN value."""

from __future__ import annotations

import shlex

from hwgate_testbed.paths import SOFTHSM_MODULE, TOKEN_LABEL, TestbedPaths


def environment(paths: TestbedPaths) -> dict[str, str]:
    """Variable name -> value, in the order they are written."""
    return {
        "SOFTHSM2_CONF": str(paths.softhsm_conf),
        "HWGATE_PKCS11_MODULE": str(SOFTHSM_MODULE),
        "HWGATE_TOKEN_LABEL": TOKEN_LABEL,
        "HWGATE_TOKEN_PIN_FILE": str(paths.user_pin),
        "HWGATE_TOKEN_SO_PIN_FILE": str(paths.so_pin),
        "HWGATE_ADDR": f"unix://{paths.admin_socket}",
    }


def render(paths: TestbedPaths) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in environment(paths).items())


def write(paths: TestbedPaths) -> None:
    paths.env_file.write_text(render(paths))
