"""Project-wide pytest configuration.

- ``--libbpf TARGET`` (repeatable): the libbpf builds the differential tests
  run against (``system``, ``1.7.0``, ``1.7.0+asan``, a path to a .so, ...).
  Default: ``system`` and ``1.7.0``.  ``pytest --libbpf PATH`` is the entry
  point for a libbpf developer: the conformance corpus and a short campaign
  against their build (tests/differential/test_conformance.py).
- Hypothesis profiles: ``ci`` (used when CI is set: derandomised, no example
  database, more examples) and ``dev`` (the default).  Registering our own
  ``ci`` keeps Hypothesis from silently loading its built-in one.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None)
settings.register_profile(
    "ci", deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

DEFAULT_TARGETS = ("system", "1.7.0")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--libbpf", action="append", default=None, metavar="TARGET",
        help="libbpf target for the differential tests (repeatable; default: system, 1.7.0)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "libbpf_target" in metafunc.fixturenames:
        targets = metafunc.config.getoption("--libbpf") or list(DEFAULT_TARGETS)
        metafunc.parametrize("libbpf_target", targets, scope="session")
