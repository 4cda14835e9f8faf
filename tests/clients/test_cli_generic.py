"""``hwgate list/describe/call`` by server reflection, and the exit-code contract."""

from __future__ import annotations

import pytest
from clients_support import Gateway, run_cli

from hwgate.cli.output import rpc_exit_code
from hwgate_testbed.paths import vpcd_reader

pytestmark = pytest.mark.testbed
NOT_FOUND, PERMISSION_DENIED = 69, 71


def test_exit_code_is_64_plus_status_code() -> None:
    import grpc

    assert rpc_exit_code(grpc.StatusCode.NOT_FOUND) == NOT_FOUND
    assert rpc_exit_code(grpc.StatusCode.UNAVAILABLE) == 78


def test_list_services_and_methods(conn: list[str]) -> None:
    result = run_cli([*conn, "list"])
    assert result.code == 0, result.err
    services = result.out.split()
    for name in (
        "hwgate.v1.CardService",
        "hwgate.v1.PivService",
        "hwgate.v1.HsmService",
        "grpc.health.v1.Health",
    ):
        assert name in services
    methods = run_cli([*conn, "list", "hwgate.v1.CardService", "--json"])
    assert methods.code == 0
    assert "hwgate.v1.CardService.WatchEvents" in methods.json()  # type: ignore[operator]


def test_describe_service_message_and_health(conn: list[str]) -> None:
    service = run_cli([*conn, "describe", "hwgate.v1.CardService"])
    assert service.code == 0, service.err
    assert "rpc WatchEvents ( .hwgate.v1.WatchEventsRequest ) returns ( stream " in service.out
    message = run_cli([*conn, "describe", "hwgate.v1.TransmitRequest"])
    assert "oneof target {" in message.out and "repeated bytes apdus = 3;" in message.out
    health = run_cli([*conn, "describe", "grpc.health.v1.Health/Check"])
    assert health.code == 0 and "rpc Check" in health.out
    missing = run_cli([*conn, "describe", "no.such.Thing"])
    assert missing.code == 1 and "not found" in missing.err


def test_call_health_check_json(conn: list[str]) -> None:
    result = run_cli([*conn, "call", "grpc.health.v1.Health/Check", "-d", "{}"])
    assert result.code == 0, result.err
    assert result.json() == {"status": "SERVING"}


def test_call_reads_data_from_stdin_and_file(conn: list[str], tmp_path: object) -> None:
    from pathlib import Path

    request = b'{"service": "hwgate.v1.CardService"}'
    via_stdin = run_cli([*conn, "call", "grpc.health.v1.Health/Check", "-d", "@-"], stdin=request)
    assert via_stdin.code == 0 and via_stdin.json() == {"status": "SERVING"}
    file = Path(str(tmp_path)) / "req.json"
    file.write_bytes(b'{"service": "no.such.Service"}')
    via_file = run_cli([*conn, "call", "grpc.health.v1.Health/Check", "-d", f"@{file}"])
    assert via_file.code == NOT_FOUND  # the health service does not know it


def test_call_unary_hwgate_method(conn: list[str]) -> None:
    result = run_cli([*conn, "call", "hwgate.v1.CardService/ListReaders"])
    assert result.code == 0, result.err
    names = [r["name"] for r in result.json()["readers"]]  # type: ignore[index]
    assert vpcd_reader(0) in names


def test_call_server_stream_prints_json_lines(conn: list[str]) -> None:
    result = run_cli(
        [
            *conn,
            "call",
            "hwgate.v1.CardService/WatchEvents",
            "-d",
            '{"readerPatterns": ["Virtual PCD 00 00"]}',
            "--count",
            "2",
        ]
    )
    assert result.code == 0, result.err
    events = result.lines()
    assert len(events) == 2 == len(result.out.splitlines())
    assert events[0]["type"] == "EVENT_TYPE_READER_STATE"
    assert events[0]["reader"] == vpcd_reader(0)
    assert events[1]["type"] == "EVENT_TYPE_SNAPSHOT_COMPLETE"


def test_stream_deadline_is_an_rpc_error(conn: list[str]) -> None:
    result = run_cli([*conn, "call", "hwgate.v1.CardService/WatchEvents", "--max-time", "0.5"])
    assert len(result.lines()) >= 1  # the snapshot came before the deadline
    assert result.code == 64 + 4, result.err  # DEADLINE_EXCEEDED
    assert "DEADLINE_EXCEEDED" in result.err


def test_rpc_error_shows_code_reason_and_metadata(conn: list[str]) -> None:
    result = run_cli(
        [
            *conn,
            "call",
            "hwgate.v1.CardService/OpenSession",
            "-d",
            '{"reader": "no such reader"}',
        ]
    )
    assert result.code == NOT_FOUND
    assert "Code: NOT_FOUND" in result.err
    assert "Reason: READER_NOT_FOUND (hwgate.v1)" in result.err
    as_json = run_cli(
        [
            *conn,
            "--json",
            "call",
            "hwgate.v1.CardService/OpenSession",
            "-d",
            '{"reader": "nope"}',
        ]
    )
    import json

    error = json.loads(as_json.err)
    assert error["reason"] == "READER_NOT_FOUND" and error["code"] == "NOT_FOUND"


def test_policy_denied_exit_code(gateway: Gateway) -> None:
    result = run_cli(["--addr", gateway.kiosk, "--json", "call", "hwgate.v1.HsmService/ListKeys"])
    assert result.code == PERMISSION_DENIED, result.err
    import json

    assert json.loads(result.err)["reason"] == "POLICY_DENIED"


def test_usage_and_connection_errors_exit_1(conn: list[str], tmp_path: object) -> None:
    assert run_cli([*conn, "call"]).code == 1  # missing SERVICE/METHOD
    bad_json = run_cli([*conn, "call", "grpc.health.v1.Health/Check", "-d", "{nope"])
    assert bad_json.code == 1 and "bad request data" in bad_json.err
    unknown = run_cli([*conn, "call", "hwgate.v1.CardService/Nope"])
    assert unknown.code == 1
    nowhere = run_cli(
        ["--addr", f"unix://{tmp_path}/none.sock", "--connect-timeout", "0.5", "list"]
    )
    assert nowhere.code == 1 and "cannot connect" in nowhere.err


def test_help_documents_exit_codes() -> None:
    result = run_cli(["--help"])
    assert result.code == 0
    assert "64+CODE" in result.out and "exit codes" in result.out
