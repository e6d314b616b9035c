"""Node settings that belong to running in Kubernetes: the shutdown limits, node ids from StatefulSet host names, JSON log lines;
and deprecated settings, still accepted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from duro.logs import JsonFormatter
from duro.settings import (
    DEPRECATED_SETTINGS,
    DuroSettings,
    ShutdownSettings,
    deprecated_settings_in_use,
    load_settings,
    node_id_of_hostname,
)
from partition_worker import log_context


def test_the_attempt_drain_must_fit_in_the_graceful_phase() -> None:
    assert ShutdownSettings().attempt_drain_timeout_ms <= ShutdownSettings().timeout_ms
    with pytest.raises(ValidationError, match="attempt_drain_timeout_ms"):
        ShutdownSettings(timeout_ms=1_000, attempt_drain_timeout_ms=5_000)


@pytest.mark.parametrize(("hostname", "node_id"), [("duro-0", 1), ("r-duro-2", 3), ("r-duro-11.r-duro-headless.ns.svc", 12)])
def test_a_statefulset_pod_s_ordinal_gives_its_node_id(hostname: str, node_id: int) -> None:
    assert node_id_of_hostname(hostname) == node_id


@pytest.mark.parametrize("hostname", ["duro", "duro-x", "laptop.local"])
def test_a_host_name_without_an_ordinal_is_refused_naming_it(hostname: str) -> None:
    with pytest.raises(ValueError, match=hostname):
        node_id_of_hostname(hostname)


def test_node_id_from_hostname_reads_hostname_and_conflicts_with_an_explicit_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "rel-duro-4")
    assert DuroSettings(node_id_from_hostname=True).node_id == 5
    with pytest.raises(ValidationError, match="both set"):
        DuroSettings(node_id_from_hostname=True, node_id=2)


def test_version_reports_the_nodes_own_ingress_unless_told_otherwise() -> None:
    assert DuroSettings(ingress_port=18080, advertised_host="duro-0.local").ingress.advertised_ingress_url == "http://duro-0.local:18080/"
    chosen = DuroSettings(ingress_port=18080, ingress={"advertised_ingress_url": "https://api.example.com/"})  # type: ignore[arg-type]
    assert chosen.ingress.advertised_ingress_url == "https://api.example.com/"


def test_json_lines_carry_node_partition_and_invocation_from_the_task_context() -> None:
    formatter = JsonFormatter(node_id=3)
    record = logging.LogRecord("duro.invoker", logging.WARNING, __file__, 1, "attempt %s failed", ("inv_1",), None)
    plain = json.loads(formatter.format(record))
    assert plain["node"] == 3 and plain["message"] == "attempt inv_1 failed" and plain["level"] == "warning"
    assert "partition" not in plain and "invocation_id" not in plain
    partition_token = log_context.partition.set(5)
    invocation_token = log_context.invocation_id.set("inv_1")
    try:
        inside = json.loads(formatter.format(record))
    finally:
        log_context.partition.reset(partition_token)
        log_context.invocation_id.reset(invocation_token)
    assert (inside["partition"], inside["invocation_id"]) == (5, "inv_1")


def test_a_deprecated_setting_is_still_accepted_and_named_as_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """metrics_max_scan_rows (0.1) bounded a scan that no longer exists: a config or environment setting it still starts."""
    assert deprecated_settings_in_use(DuroSettings()) == []
    config = tmp_path / "duro.toml"
    config.write_text("metrics_max_scan_rows = 5000\n")
    (line,) = deprecated_settings_in_use(load_settings(config, {}))
    assert "metrics_max_scan_rows" in line and "ignored" in line
    monkeypatch.setenv("DURO_METRICS_MAX_SCAN_ROWS", "5000")
    assert [name for name in DEPRECATED_SETTINGS if name in DuroSettings().model_fields_set] == ["metrics_max_scan_rows"]
    with pytest.raises(ValidationError, match="metrics_max_scan_rows"):
        DuroSettings(metrics_max_scan_rows=0)


def test_worker_start_timeout_ms_is_deprecated_for_the_stall_bound(tmp_path: Path) -> None:
    config = tmp_path / "duro.toml"
    config.write_text("[worker]\nstart_timeout_ms = 600000\n")
    (line,) = deprecated_settings_in_use(load_settings(config, {}))
    assert line.startswith("setting worker.start_timeout_ms is deprecated and ignored: ")
    assert "worker.start_stall_timeout_ms" in line
    assert deprecated_settings_in_use(DuroSettings(worker={"start_stall_timeout_ms": 5_000})) == []
