"""A kiosk client that runs as another uid: ``peer_client.py SOCKET UID GID OP [ARG]``.

Run by tests/security/test_peercred.py as root. The interpreter lives under
/root (pyenv), which another uid cannot exec, so this script drops its
privileges itself, after every import, instead of in a preexec_fn. Prints one
JSON object: {"ok": value} or {"error": ErrorInfo reason}.
"""

from __future__ import annotations

import json
import os
import sys

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from hwgate.v1 import card_pb2, card_pb2_grpc, piv_pb2, piv_pb2_grpc


def reason(err: grpc.RpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return str(err.code().name)


def run(channel: grpc.Channel, op: str, arg: str) -> object:
    card = card_pb2_grpc.CardServiceStub(channel)
    if op == "open":
        return card.OpenSession(card_pb2.OpenSessionRequest(reader=arg), timeout=10).session_id
    if op == "close":
        card.CloseSession(card_pb2.CloseSessionRequest(session_id=arg), timeout=10)
        return True
    if op == "info":
        piv = piv_pb2_grpc.PivServiceStub(channel)
        reply = piv.GetCardInfo(piv_pb2.GetCardInfoRequest(session_id=arg), timeout=10)
        return reply.reader
    if op == "select":
        select = bytes.fromhex("00A4040009A0000003080000100000")
        request = card_pb2.TransmitRequest(reader=arg, apdus=[select])
        return card.Transmit(request, timeout=10).responses[0].status_word
    raise SystemExit(f"unknown op {op}")


def main() -> None:
    socket, uid, gid, op = sys.argv[1:5]
    arg = sys.argv[5] if len(sys.argv) > 5 else ""
    os.setgroups([])
    os.setgid(int(gid))
    os.setuid(int(uid))
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        try:
            print(json.dumps({"ok": run(channel, op, arg)}))
        except grpc.RpcError as err:
            print(json.dumps({"error": reason(err)}))


if __name__ == "__main__":
    main()
