"""End-to-end tier: the demo path (control plane, twin, operator) on a short sped-up trace.

Each test's headline numbers (the twin's SLO attainment among them) are printed in the terminal summary, so a
plain `make test` shows them without -s.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

_REPORTED = pytest.StashKey[list[str]]()


@pytest.fixture
def report_line(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Call with a line to show in the run's terminal summary."""
    lines = request.config.stash.setdefault(_REPORTED, [])

    def add(line: str) -> None:
        lines.append(f"{request.node.name}: {line}")

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_REPORTED, [])
    if lines:
        terminalreporter.section("end-to-end: the twin's results")
        for line in lines:
            terminalreporter.write_line(line)
