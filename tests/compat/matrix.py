"""Render the compatibility matrix from the suite's last run into README.md.

`python -m tests.compat.matrix` replaces the text between the README's
`<!-- matrix:begin -->` and `<!-- matrix:end -->` markers with a table: rows are
scenarios, columns are (runtime / implementation), cells are what the last
run of `tests/compat` recorded (pass, FAIL, or the reason a cell was skipped).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).parent / "results" / "last-run.json"
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"


def _cell(outcome: str) -> str:
    if outcome == "passed":
        return "pass"
    if outcome == "failed":
        return "**FAIL**"
    return outcome.replace("|", "/")


def render(results: dict) -> str:
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


def main() -> None:
    results = json.loads(RESULTS.read_text())
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + render(results) + "\n" + text[end:])


if __name__ == "__main__":
    main()
