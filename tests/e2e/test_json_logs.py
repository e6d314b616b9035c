"""`duro serve --log-format json`: every line is a JSON object naming the node; lines about an invocation name it and its partition."""

from __future__ import annotations

import json
from pathlib import Path

from protocol.ids import InvocationId
from tests.processes import DuroServer, ServiceEndpoint, wait_until
from wal.partitioner import partition_of

PARTITIONS = 4


def test_json_lines_name_node_partition_and_invocation(tmp_path: Path, official_python_service: ServiceEndpoint) -> None:
    node = DuroServer(
        tmp_path / "data", tmp_path / "duro.log", partitions=PARTITIONS, extra_args=["--log-format", "json", "--node-id", "7"]
    )
    node.start()
    try:
        node.wait_ready()
        node.register(official_python_service.uri)
        official_python_service.stop()  # attempts now fail to connect, and the invoker logs each failure
        status, _, body = node.call("/Greeter/greet/send", "Ada")
        assert status == 202, body
        invocation_id = json.loads(body)["invocationId"]
        wait_until(lambda: invocation_id in node.log_path.read_text(), 30, "a log line about the failing attempt")
    finally:
        node.stop()
    lines = [json.loads(line) for line in node.log_path.read_text().splitlines() if line.strip()]
    assert lines, "duro logged something"
    for line in lines:
        assert {"time", "level", "logger", "message", "node"} <= line.keys(), line
        assert line["node"] == 7
        assert line["time"].endswith("Z") and "T" in line["time"]
    about = [line for line in lines if invocation_id in line["message"]]
    assert about, "the failing attempt is logged"
    partition = partition_of(InvocationId.parse(invocation_id).partition_key, PARTITIONS)
    for line in about:
        assert line["invocation_id"] == invocation_id, line
        assert line["partition"] == partition, line
    assert any(line["message"].startswith("duro node 7 ready") for line in lines)
