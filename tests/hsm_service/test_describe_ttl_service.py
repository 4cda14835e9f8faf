"""A key relabelled outside the daemon is authorized by its new label after
``describe_ttl`` (issue 16 item 6), through a real hwgated.

In ``hsm_service_support``'s policy the enrollment role may use every key but
``issuing-ca``. A key it may use is relabelled ``issuing-ca`` by another PKCS#11
application: within the TTL the daemon may still answer from its remembered
description, after it the policy must refuse the enrollment role (the audit log
says POLICY_DENIED). Before the TTL the daemon passed the policy on the old
label for its whole life; the sign then only failed, as KEY_NOT_FOUND, when it
reached a worker without a cached handle for the old label.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hsm_service_support import HsmDaemon, render_config

from hwgate.v1 import common_pb2, hsm_pb2
from hwgate_testbed.paths import SOFTHSM_MODULE, TOKEN_LABEL
from support.daemon import start_daemon

pytestmark = pytest.mark.testbed

ECDSA = common_pb2.SIGNATURE_ALGORITHM_ECDSA_SHA256
DIGEST = hashlib.sha256(b"ttl").digest()
TTL = 0.3


def _change(module: str, conf: str, pin_file: str, key_id: bytes, new_label: str | None) -> int:
    """In a child process (this one must not load SoftHSM): relabel (None: destroy) every
    object with ``key_id``, as another application sharing the token would."""
    os.environ["SOFTHSM2_CONF"] = conf
    import pkcs11
    from pkcs11 import Attribute

    pin = Path(pin_file).read_text().strip()
    tok = pkcs11.lib(module).get_token(token_label=TOKEN_LABEL)
    with tok.open(rw=True, user_pin=pin) as session:
        objects = list(session.get_objects({Attribute.ID: key_id}))
        for obj in objects:
            if new_label is None:
                obj.destroy()
            else:
                obj[Attribute.LABEL] = new_label
    return len(objects)


def change_outside(paths: Any, key_id: bytes, new_label: str | None) -> int:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as child:
        args = (str(SOFTHSM_MODULE), str(paths.softhsm_conf), str(paths.user_pin), key_id)
        count: int = child.apply(_change, (*args, new_label))
    return count


def denied(daemon: HsmDaemon, key_id: bytes) -> bool:
    """True once the audit log shows an enrollment sign by this id refused by policy."""
    return any(
        r.get("role") == "enrollment"
        and r.get("action") == "hsm.sign"
        and r.get("key") == "id:" + key_id.hex()
        and r.get("outcome") == "POLICY_DENIED"
        for r in daemon.audit_records()
    )


@pytest.fixture
def ttl_hsmd(testbed: object, tmp_path: Path) -> Iterator[HsmDaemon]:
    """A daemon whose token trusts a key description for TTL seconds."""
    directory = tmp_path / "d"
    directory.mkdir()
    config = render_config(directory, testbed)
    text = config.read_text()
    assert "op_timeout = 10.0\n" in text
    config.write_text(
        text.replace("op_timeout = 10.0\n", f"op_timeout = 10.0\ndescribe_ttl = {TTL}\n")
    )
    proc = start_daemon(config, directory / "admin.sock", directory / "hwgated.log")
    yield HsmDaemon(proc, directory)
    proc.stop(signal.SIGTERM)


def test_a_key_relabelled_to_a_hidden_label_is_refused_after_the_ttl(
    ttl_hsmd: HsmDaemon, testbed: object
) -> None:
    paths = testbed.paths  # type: ignore[attr-defined]
    admin, enrollment = ttl_hsmd.stub("admin"), ttl_hsmd.stub("enrollment")
    key_id = uuid.uuid4().bytes[:8]
    admin.GenerateKey(
        hsm_pb2.GenerateKeyRequest(
            label=f"ttl-{key_id.hex()}", id=key_id, algorithm=common_pb2.KEY_ALGORITHM_EC_P256
        )
    )
    by_id = hsm_pb2.HsmServiceSignRequest(
        key=hsm_pb2.KeyRef(id=key_id), algorithm=ECDSA, digest=DIGEST
    )
    try:
        assert enrollment.Sign(by_id).signature  # allowed, and its description remembered
        assert change_outside(paths, key_id, "issuing-ca") == 2  # private + public
        # Within the TTL a call may still pass the policy on the old label (and then
        # miss: the daemon signs with label + id); after it, the policy must refuse.
        deadline = time.monotonic() + 20  # generous: "not stale for ever"
        while not denied(ttl_hsmd, key_id):
            with contextlib.suppress(grpc.RpcError):
                enrollment.Sign(by_id)
            assert time.monotonic() < deadline, "authorized on the old label for 20 s"
            time.sleep(0.05)
        with pytest.raises(grpc.RpcError) as err:
            enrollment.Sign(by_id)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND  # hidden looks missing
        assert admin.Sign(by_id).signature  # the key is there; only the label changed
    finally:
        # Outside too: leave no second ``issuing-ca`` even when the daemon is wrong.
        change_outside(paths, key_id, None)
