"""The chain of size limits: defaults that fit every log, and settings that do not fit stop start-up naming both."""

from __future__ import annotations

from pathlib import Path

import pytest

from duro.limits import RECORD_ALLOWANCE_BYTES, LimitsError, effective_limits
from duro.settings import DuroSettings

MIB = 1024 * 1024


def test_defaults_fit_the_embedded_log_and_are_kept_where_they_fit(tmp_path: Path) -> None:
    limits = effective_limits(DuroSettings(data_dir=tmp_path))
    assert limits.max_append_bytes == 32 * MIB
    assert limits.ingress.max_body_bytes == 10 * MIB
    assert limits.invoker.max_frame_bytes == 32 * MIB - RECORD_ALLOWANCE_BYTES  # 32 MiB would not fit one append with its record
    assert limits.subscriptions.max_record_bytes == 10 * MIB


def test_defaults_are_lowered_to_what_the_kafka_log_takes(tmp_path: Path) -> None:
    limits = effective_limits(DuroSettings(data_dir=tmp_path, log="kafka"))
    room = 8 * MIB - RECORD_ALLOWANCE_BYTES
    assert limits.max_append_bytes == 8 * MIB
    assert (limits.ingress.max_body_bytes, limits.invoker.max_frame_bytes, limits.subscriptions.max_record_bytes) == (room, room, room)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (
            {"log": "kafka", "ingress": {"max_body_bytes": 20 * MIB}},
            ("ingress.max_body_bytes (20971520)", "the kafka log's max_append_bytes (8388608)"),
        ),
        (
            {"max_append_bytes": 4 * MIB, "invoker": {"max_frame_bytes": 5 * MIB}},
            ("invoker.max_frame_bytes (5242880)", "max_append_bytes (4194304)"),
        ),
        (
            {"log": "kafka", "subscriptions": {"max_record_bytes": 9 * MIB}},
            ("subscriptions.max_record_bytes (9437184)", "max_append_bytes (8388608)"),
        ),
        (
            {"processor": {"leader_task_restart_initial_backoff_ms": 500, "leader_task_restart_max_backoff_ms": 100}},
            ("leader_task_restart_initial_backoff_ms (500)", "leader_task_restart_max_backoff_ms (100)"),
        ),
    ],
)
def test_a_setting_that_does_not_fit_is_refused_naming_both_settings(tmp_path: Path, overrides: dict, names: tuple[str, str]) -> None:
    with pytest.raises(LimitsError) as error:
        effective_limits(DuroSettings(data_dir=tmp_path, **overrides))
    for name in names:
        assert name in str(error.value), str(error.value)


def test_a_larger_append_limit_makes_room_for_a_larger_body(tmp_path: Path) -> None:
    limits = effective_limits(DuroSettings(data_dir=tmp_path, log="kafka", max_append_bytes=64 * MIB, ingress={"max_body_bytes": 20 * MIB}))
    assert limits.ingress.max_body_bytes == 20 * MIB and limits.invoker.max_frame_bytes == 32 * MIB


def test_a_tiny_append_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LimitsError, match="leaves no room for a record"):
        effective_limits(DuroSettings(data_dir=tmp_path, max_append_bytes=1000))
