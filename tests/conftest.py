"""Project-wide pytest configuration.

- ``--libbpf TARGET`` (repeatable): the libbpf builds the differential tests
  run against (``system``, ``1.7.0``, ``1.7.0+asan``, a path to a .so, ...).
  Default: ``system`` and ``1.7.0``.  ``pytest --libbpf PATH`` is the entry
  point for a libbpf developer: the conformance corpus and a short campaign
  against their build (tests/differential/test_conformance.py).  The option
  comes from the package's pytest plugin (``oracle.pytest_plugin``, a
  ``pytest11`` entry point when installed); ``pytest_plugins`` loads it here
  too, a no-op when the entry point already did.
- Hypothesis profiles: ``ci`` (used when CI is set: derandomised, no example
  database, more examples) and ``dev`` (the default).  Registering our own
  ``ci`` keeps Hypothesis from silently loading its built-in one.
- The run ends with one line naming what was skipped and why, grouped by
  reason (``skipped 3: bpf() not permitted (2); ... (1)``), after pytest's
  own per-test summary.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Generator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None)
settings.register_profile(
    "ci", deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

pytest_plugins = ["oracle.pytest_plugin"]


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason a skipped report gives, without pytest's ``Skipped: `` prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ") or "no reason given"


def skip_summary(reports: list[pytest.TestReport | pytest.CollectReport]) -> str | None:
    """``skipped N: reason (k); ...``, most frequent first; None when nothing was skipped."""
    if not reports:
        return None
    counts = Counter(skip_reason(r) for r in reports)
    groups = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return f"skipped {len(reports)}: " + "; ".join(f"{why} ({n})" for why, n in groups)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None]:
    """After every other summary (tryfirst wrapper: outermost), the one-line skip summary."""
    try:
        return (yield)
    finally:
        line = skip_summary(terminalreporter.stats.get("skipped", []))
        if line is not None:
            terminalreporter.write_line(line, yellow=True)
