"""ListKeys pages (AIP-158, issue 17 item 1) through a real hwgated on SoftHSM2.

Each test makes its own keys under a unique label prefix (AES keys, the
cheapest to generate) and deletes them afterwards: the token is shared. The
raw stub shows the pages; the blocking and asyncio clients and ``hwgate keys``
must hand back every key across pages, and ``hwgate call`` shows one page.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from hsm_service_support import HsmDaemon, label
from pkcs11 import Attribute, KeyType, ObjectClass

import hwgate
import hwgate.aio
from hwgate.cli.main import main as cli_main
from hwgate.v1 import common_pb2, hsm_pb2, hsm_pb2_grpc
from hwgate_testbed import softhsm
from support.daemon import error_info

pytestmark = pytest.mark.testbed

COUNT = 7
PAGE = 3


@dataclass
class Batch:
    """Keys this test made: ``labels`` sorted, matched by ``pattern`` alone."""

    prefix: str
    labels: list[str]
    daemon: HsmDaemon

    @property
    def pattern(self) -> str:
        return self.prefix + "*"

    def make(self, name: str) -> str:
        made = self.prefix + name
        self.labels.append(made)  # cleaned up even if the test fails from here on
        generate(self.daemon.stub(), made)
        return made


def generate(stub: hsm_pb2_grpc.HsmServiceStub, name: str) -> None:
    request = hsm_pb2.GenerateKeyRequest(label=name, algorithm=common_pb2.KEY_ALGORITHM_AES_256)
    stub.GenerateKey(request)


@pytest.fixture
def batch(hsmd: HsmDaemon) -> Iterator[Batch]:
    """COUNT persistent keys svc-pg-<random>-k0..k6 (admin), deleted afterwards."""
    made = Batch(f"svc-pg-{uuid.uuid4().hex[:8]}-", [], hsmd)
    try:
        for i in range(COUNT):
            made.make(f"k{i}")
        yield made
    finally:
        stub = hsmd.stub()
        for name in made.labels:
            with contextlib.suppress(grpc.RpcError):
                stub.DeleteKey(hsm_pb2.DeleteKeyRequest(key=label(name)))


def list_page(stub: hsm_pb2_grpc.HsmServiceStub, **fields: object) -> hsm_pb2.ListKeysResponse:
    return stub.ListKeys(hsm_pb2.ListKeysRequest(**fields))  # type: ignore[arg-type]


def refusal(stub: hsm_pb2_grpc.HsmServiceStub, **fields: object) -> tuple[object, str, dict]:
    with pytest.raises(grpc.RpcError) as err:
        list_page(stub, **fields)
    return error_info(err.value)


INVALID_PAGE_TOKEN = (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", {"field": "page_token"})


def test_more_keys_than_one_page_chain_to_an_empty_token(batch: Batch) -> None:
    stub = batch.daemon.stub()
    pages, token = [], ""
    for _ in range(COUNT + 1):
        reply = list_page(stub, label_pattern=batch.pattern, page_size=PAGE, page_token=token)
        pages.append([k.label for k in reply.keys])
        token = reply.next_page_token
        if not token:
            break
    assert not token, "the next_page_token chain did not end"
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [name for page in pages for name in page] == sorted(batch.labels)
    whole = list_page(stub, label_pattern=batch.pattern)  # page_size 0: the default, 100
    assert [k.label for k in whole.keys] == sorted(batch.labels) and not whole.next_page_token


def test_keys_made_and_deleted_between_pages(batch: Batch) -> None:
    stub = batch.daemon.stub()
    first = list_page(stub, label_pattern=batch.pattern, page_size=PAGE)
    assert [k.label for k in first.keys] == sorted(batch.labels)[:PAGE]
    anchor, later = first.keys[-1].label, sorted(batch.labels)[5]  # k2 ends page 1; k5
    for name in (anchor, later):
        stub.DeleteKey(hsm_pb2.DeleteKeyRequest(key=label(name)))
    before, after = batch.make("k1a"), batch.make("k9")  # sort before / after the cursor
    rest, token = [], first.next_page_token
    while token:
        reply = list_page(stub, label_pattern=batch.pattern, page_size=PAGE, page_token=token)
        rest += [k.label for k in reply.keys]
        token = reply.next_page_token
    prefix = batch.prefix
    assert rest == [prefix + n for n in ("k3", "k4", "k6", "k9")]
    assert before not in rest and after in rest and later not in rest
    listed = [k.label for k in first.keys] + rest
    assert len(listed) == len(set(listed))


def test_page_size_may_change_between_pages(batch: Batch) -> None:
    stub = batch.daemon.stub()
    first = list_page(stub, label_pattern=batch.pattern, page_size=2)
    second = list_page(
        stub, label_pattern=batch.pattern, page_size=4, page_token=first.next_page_token
    )
    assert [k.label for k in [*first.keys, *second.keys]] == sorted(batch.labels)[:6]
    assert second.next_page_token


def test_an_old_token_with_another_filter_is_refused(batch: Batch) -> None:
    stub = batch.daemon.stub()
    token = list_page(stub, label_pattern=batch.pattern, page_size=PAGE).next_page_token
    assert token
    assert refusal(stub, label_pattern="svc-*", page_size=PAGE, page_token=token) == (
        INVALID_PAGE_TOKEN
    )
    assert refusal(stub, page_token=token) == INVALID_PAGE_TOKEN
    same_token_named = dict(label_pattern=batch.pattern, token="testbed", page_token=token)
    assert refusal(stub, **same_token_named) == INVALID_PAGE_TOKEN
    # The request that made it still takes it.
    assert list_page(stub, label_pattern=batch.pattern, page_token=token).keys


@pytest.mark.parametrize(
    "garbage",
    ["garbage", "!!", "A" * 100_000, "AAAA", "=" * 8, "é"],
)
def test_garbage_page_tokens_are_refused(hsmd: HsmDaemon, garbage: str) -> None:
    assert refusal(hsmd.stub(), page_token=garbage) == INVALID_PAGE_TOKEN


def test_a_tampered_page_token_is_refused(batch: Batch) -> None:
    stub = batch.daemon.stub()
    token = list_page(stub, label_pattern=batch.pattern, page_size=1).next_page_token
    for index in (0, len(token) // 2, len(token) - 1):
        char = "B" if token[index] != "B" else "C"
        tampered = token[:index] + char + token[index + 1 :]
        fields = dict(label_pattern=batch.pattern, page_size=1, page_token=tampered)
        assert refusal(stub, **fields) == INVALID_PAGE_TOKEN


def test_a_negative_page_size_is_refused(hsmd: HsmDaemon) -> None:
    assert refusal(hsmd.stub(), page_size=-1) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        {"field": "page_size"},
    )


def test_a_page_size_over_the_maximum_is_served(batch: Batch) -> None:
    stub = batch.daemon.stub()
    everything = list_page(stub).keys
    assert len(everything) < 1000  # so one page of the maximum holds them all
    huge = list_page(stub, page_size=2**31 - 1)
    assert list(huge.keys) == list(everything) and not huge.next_page_token
    assert batch.labels[0] in {k.label for k in huge.keys}


def test_hidden_keys_leave_no_trace_in_pages(hsmd: HsmDaemon) -> None:
    """enrollment may not see issuing-ca: one key per page, no page for the hidden one,
    and a token the admin got at issuing-ca shows the enrollment role nothing of it."""
    enrollment = hsmd.stub("enrollment")
    unpaged = [k.label for k in list_page(enrollment).keys]
    assert "issuing-ca" not in unpaged
    pages, token = [], ""
    for _ in range(len(unpaged) + 1):
        reply = list_page(enrollment, page_size=1, page_token=token)
        pages.append([k.label for k in reply.keys])
        token = reply.next_page_token
        if not token:
            break
    assert pages == [[name] for name in unpaged]
    admin = [k.label for k in list_page(hsmd.stub()).keys]
    at = admin.index("issuing-ca")
    token = list_page(hsmd.stub(), page_size=at + 1).next_page_token  # ends at issuing-ca
    assert token
    rest = [k.label for k in list_page(enrollment, page_token=token).keys]
    assert rest == [name for name in admin[at + 1 :] if name in unpaged]


def test_both_clients_return_every_page(batch: Batch) -> None:
    target = f"unix://{batch.daemon.directory / 'admin.sock'}"
    expected = sorted(batch.labels)
    with hwgate.connect(target) as client:
        paged = client.list_keys(label_pattern=batch.pattern, page_size=PAGE)
        assert [k.label for k in paged] == expected
        assert [k.label for k in client.list_keys("testbed", batch.pattern)] == expected

    async def aio() -> list[str]:
        async with hwgate.aio.connect(target) as client:
            keys = await client.list_keys(label_pattern=batch.pattern, page_size=PAGE)
            return [k.label for k in keys]

    assert asyncio.run(aio()) == expected


def run_cli(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli_main(args)
    return code, out.getvalue()


def test_cli_keys_lists_every_page_and_call_shows_one(batch: Batch) -> None:
    addr = ["--addr", f"unix://{batch.daemon.directory / 'admin.sock'}", "--json"]
    code, out = run_cli([*addr, "keys", "--label", batch.pattern, "--page-size", str(PAGE)])
    assert code == 0
    assert [k["label"] for k in json.loads(out)["keys"]] == sorted(batch.labels)
    request = json.dumps({"labelPattern": batch.pattern, "pageSize": PAGE})
    code, out = run_cli([*addr, "call", "hwgate.v1.HsmService/ListKeys", "-d", request])
    assert code == 0
    page = json.loads(out)
    assert [k["label"] for k in page["keys"]] == sorted(batch.labels)[:PAGE]
    assert page["nextPageToken"]


def test_a_key_with_neither_label_nor_id_is_listed_not_fatal(
    testbed: object, hsmd: HsmDaemon
) -> None:
    """Another application may leave an object with no CKA_LABEL and no CKA_ID on a
    shared token. ListKeys failed INVALID_ARGUMENT for everyone on it (the key's URI
    was built from a reference that needs one of the two); now the key is listed, with
    no URI, since nothing can select it."""
    paths = testbed.paths  # type: ignore[attr-defined]
    marker = uuid.uuid4().bytes  # CKA_VALUE of a generic secret: how the test finds it
    template = {
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
        Attribute.VALUE: marker, Attribute.TOKEN: True, Attribute.SENSITIVE: False,
        Attribute.EXTRACTABLE: True, Attribute.PRIVATE: True,
    }  # fmt: skip
    with softhsm.user_session(paths, rw=True) as session:
        session.create_object(template)
    try:
        stub = hsmd.stub()
        keys, token = [], ""
        while True:
            page = list_page(stub, page_token=token)
            keys += page.keys
            token = page.next_page_token
            if not token:
                break
        nameless = [k for k in keys if not k.label and not k.id]
        assert len(nameless) == 1
        assert nameless[0].uri == ""
        assert nameless[0].key_class == hsm_pb2.KEY_CLASS_SECRET_KEY
        assert any(k.label == "escrow-kek" and k.uri for k in keys)  # the others as before
    finally:
        with softhsm.user_session(paths, rw=True) as session:
            for obj in session.get_objects({Attribute.VALUE: marker}):
                obj.destroy()
