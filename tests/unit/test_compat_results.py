"""Where the compatibility suite's results go: test runs write a git-ignored file; only `--record` changes the tracked matrix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.compat import conftest as compat_conftest
from tests.compat import matrix


def test_test_runs_write_a_git_ignored_file_not_the_recorded_matrix() -> None:
    ignored = [line.strip() for line in (matrix.ROOT / ".gitignore").read_text().splitlines()]
    run_folder = "/" + matrix.RUN_RESULTS.parent.relative_to(matrix.ROOT).as_posix() + "/"
    assert run_folder == "/tests/compat/results/runs/"
    assert run_folder in ignored
    assert matrix.RECORDED_RESULTS.relative_to(matrix.ROOT).as_posix() == "tests/compat/results/last-run.json"
    assert not any(matrix.RECORDED_RESULTS.relative_to(matrix.ROOT).as_posix().startswith(line.strip("/")) for line in ignored if line)


def test_a_session_merges_its_cells_into_the_run_file_and_leaves_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded_before = matrix.RECORDED_RESULTS.read_bytes()
    run_file = tmp_path / "runs" / "last-run.json"
    monkeypatch.setattr(compat_conftest, "RUN_RESULTS", run_file)
    monkeypatch.setattr(compat_conftest, "_results", {"test_durable_sleep": {"duro / python-sdk h2": "failed"}})
    monkeypatch.delenv("DURO_COMPAT_NO_RESULTS", raising=False)
    compat_conftest.pytest_sessionfinish(None)  # type: ignore[arg-type]  # the hook does not read its session
    monkeypatch.setattr(compat_conftest, "_results", {"test_delayed_send": {"duro / python-sdk h2": "passed"}})
    compat_conftest.pytest_sessionfinish(None)  # type: ignore[arg-type]  # likewise
    written = json.loads(run_file.read_text())
    assert written["scenarios"] == {
        "test_durable_sleep": {"duro / python-sdk h2": "failed"},
        "test_delayed_send": {"duro / python-sdk h2": "passed"},
    }
    assert matrix.RECORDED_RESULTS.read_bytes() == recorded_before


def test_record_merges_the_run_into_the_record_and_renders_the_readme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_file, recorded = tmp_path / "runs" / "last-run.json", tmp_path / "last-run.json"
    (tmp_path / "README.md").write_text("before\n<!-- matrix:begin -->\nold\n<!-- matrix:end -->\nafter\n")
    monkeypatch.setattr(matrix, "ROOT", tmp_path)
    monkeypatch.setattr(matrix, "RUN_RESULTS", run_file)
    monkeypatch.setattr(matrix, "RECORDED_RESULTS", recorded)
    matrix.merge_into(recorded, {"test_a": {"x": "passed"}, "test_b": {"x": "passed"}}, {"x": "1.0"})
    assert matrix.main(["--record"]) == 1  # no run yet: nothing to record
    matrix.merge_into(run_file, {"test_b": {"x": "failed"}}, {"x": "1.1"})
    assert matrix.main([]) == 0
    assert "| b | pass |" in (tmp_path / "README.md").read_text()  # rendered from the record, the run not taken
    assert matrix.main(["--record"]) == 0
    assert json.loads(recorded.read_text()) == {
        "scenarios": {"test_a": {"x": "passed"}, "test_b": {"x": "failed"}},
        "versions": {"x": "1.1"},
    }
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("before\n<!-- matrix:begin -->\n| scenario | x |")
    assert "| a | pass |\n| b | **FAIL** |" in readme
    assert "\nVersions: x: 1.1. Python " in readme
    assert readme.endswith("\n<!-- matrix:end -->\nafter\n")
