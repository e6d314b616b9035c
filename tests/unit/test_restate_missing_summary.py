"""The tests needing the real Restate server: where its script is looked for, and the loud summary line when it is missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import REPO_ROOT, RESTATE_SCRIPT_DEFAULT, RESTATE_SCRIPT_VARIABLE, RestateServer, restate_script


def test_the_script_is_found_where_the_variable_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "restate-server.sh"
    script.write_text("#!/bin/sh\n")
    monkeypatch.setenv(RESTATE_SCRIPT_VARIABLE, str(script))
    assert restate_script() == script
    assert RestateServer.unavailable_reason() is None
    monkeypatch.delenv(RESTATE_SCRIPT_VARIABLE)
    assert restate_script() == RESTATE_SCRIPT_DEFAULT


def test_a_missing_script_is_a_skip_whose_reason_names_the_path_and_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere" / "restate-server.sh"
    monkeypatch.setenv(RESTATE_SCRIPT_VARIABLE, str(missing))
    reason = RestateServer.unavailable_reason()
    assert reason is not None and str(missing) in reason and RESTATE_SCRIPT_VARIABLE in reason


def test_pytest_says_in_its_summary_how_many_tests_skipped_for_the_missing_server(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "restate-server.sh"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/compat/test_sql_on_both.py"],
        cwd=REPO_ROOT,
        env={**os.environ, RESTATE_SCRIPT_VARIABLE: str(missing)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"skips must not fail the run:\n{result.stdout}\n{result.stderr}"
    line = re.search(
        r"^(\d+) tests SKIPPED because the real Restate server's script was not found at (\S+);.* set (\w+) ", result.stdout, re.M
    )
    assert line is not None, f"no summary line about the Restate server in:\n{result.stdout}"
    skipped = re.search(r"(\d+) skipped", result.stdout.splitlines()[-1])
    assert skipped is not None and int(line.group(1)) == int(skipped.group(1)) > 0
    assert line.group(2) == str(missing)
    assert line.group(3) == RESTATE_SCRIPT_VARIABLE
