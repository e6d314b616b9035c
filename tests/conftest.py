"""Fixtures and hooks shared by every test folder: a real Kafka broker for the whole session; a loud line when the real Restate server was missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.kafka_broker import KafkaBroker, unavailable_reason
from tests.processes import RESTATE_SCRIPT_VARIABLE, RESTATE_UNAVAILABLE, restate_script

# Property tests keep no example database in the checkout; a failure prints its example, which reproduces it.
settings.register_profile("duro", database=None, deadline=None)
settings.load_profile("duro")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """ "127.0.0.1:PORT" of a broker started once per session; tests using it are skipped only if the broker was not fetched."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def skipped_for_restate(reports: list[pytest.TestReport]) -> int:
    """How many of these skipped reports were skipped because the real Restate server's script was not found."""
    return sum(1 for report in reports if isinstance(report.longrepr, tuple) and RESTATE_UNAVAILABLE in str(report.longrepr[2]))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Says loudly how many tests skipped for want of the real Restate server, where its script was looked for and how to point at it.

    Not a failure: a fresh clone (CI's) may lack ../shared; but the skips must not pass unnoticed.
    """
    count = skipped_for_restate(terminalreporter.stats.get("skipped", []))
    if count:
        terminalreporter.write_sep("=", "real Restate server missing", yellow=True, bold=True)
        terminalreporter.write_line(
            f"{count} tests SKIPPED because the real Restate server's script was not found at {restate_script()};"
            f" set {RESTATE_SCRIPT_VARIABLE} to the path of restate-server.sh to run them",
            yellow=True,
            bold=True,
        )
