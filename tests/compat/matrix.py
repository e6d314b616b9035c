"""The compatibility matrix's results: a test run's cells, the recorded matrix, and the README table rendered from it.

A run of `tests/compat` merges its cells into `results/runs/last-run.json`,
which git ignores, so running the tests leaves the checkout as it was. The
tracked `results/last-run.json` is the recorded matrix, changed only on
purpose:

    python -m tests.compat.matrix --record   # merge the runs' cells into the record, then render the README
    python -m tests.compat.matrix            # render the README from the record as it is

Rendering replaces the text between the README's `<!-- matrix:begin -->` and
`<!-- matrix:end -->` markers with a table: rows are scenarios, columns are
(runtime / implementation), cells are what was recorded (pass, FAIL, or the
reason a cell was skipped).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RECORDED_RESULTS = Path(__file__).parent / "results" / "last-run.json"  # tracked: the README's matrix
RUN_RESULTS = Path(__file__).parent / "results" / "runs" / "last-run.json"  # git-ignored: what test runs wrote
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"


def merge_into(path: Path, scenarios: Mapping[str, Mapping[str, str]], versions: Mapping[str, str | None]) -> None:
    """Merge cells (scenario -> column -> outcome) into the results file at `path`; a cell not given keeps its value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    merged: dict[str, dict[str, str]] = json.loads(path.read_text())["scenarios"] if path.exists() else {}
    for scenario, columns in scenarios.items():
        merged.setdefault(scenario, {}).update(columns)
    path.write_text(json.dumps({"scenarios": merged, "versions": dict(versions)}, indent=2, sort_keys=True) + "\n")


def _cell(outcome: str) -> str:
    if outcome == "passed":
        return "pass"
    if outcome == "failed":
        return "**FAIL**"
    return outcome.replace("|", "/")


def render(results: dict[str, Any]) -> str:
    scenarios: dict[str, dict[str, str]] = results["scenarios"]
    columns = sorted({column for cells in scenarios.values() for column in cells})
    lines = ["| scenario | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for scenario in sorted(scenarios):
        name = scenario.removeprefix("test_").replace("_", " ")
        cells = scenarios[scenario]
        lines.append(f"| {name} | " + " | ".join(_cell(cells.get(column, "not run")) for column in columns) + " |")
    versions = ", ".join(f"{name}: {version}" for name, version in sorted(results.get("versions", {}).items()) if version)
    lines.append("")
    lines.append(f"Versions: {versions}. Python {platform.python_version()}.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.compat.matrix", description=__doc__.split("\n")[0])
    parser.add_argument("--record", action="store_true", help=f"first merge the test runs' cells ({RUN_RESULTS}) into the record")
    args = parser.parse_args(argv)
    if args.record:
        if not RUN_RESULTS.exists():
            print(f"no test run has written {RUN_RESULTS}: run tests/compat first", file=sys.stderr)
            return 1
        run = json.loads(RUN_RESULTS.read_text())
        merge_into(RECORDED_RESULTS, run["scenarios"], run["versions"])
    results = json.loads(RECORDED_RESULTS.read_text())
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + render(results) + "\n" + text[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
