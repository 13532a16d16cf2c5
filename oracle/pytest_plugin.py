"""The ``--libbpf`` pytest option, shipped as a ``pytest11`` plugin of the package.

``pip install libbpf-sec-oracle`` registers this module (entry point
``oracle.pytest_plugin``), so ``pytest --pyargs oracle.conformance --libbpf
~/libbpf`` runs the packaged conformance tests against a build without this
repository.

Rules:
- ``--libbpf TARGET`` (repeatable; default ``DEFAULT_TARGETS``) parametrizes
  every test that takes a ``libbpf_target`` argument, session-scoped.
- The option is registered once: the entry point's name is this module's
  name, so the repository's ``tests/conftest.py`` listing it in
  ``pytest_plugins`` (for a checkout where the package is not installed, or
  installed without the entry point) is a no-op when pytest has already
  loaded it.
- A target that cannot be had (not built, no table) skips the test with the
  reason (``target_or_skip``, ``version_or_skip``); it never fails it.
- Nothing heavy is imported at load time: every pytest run in an
  environment with the package loads this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import pytest

if TYPE_CHECKING:
    from oracle.libbpf.targets import Target

DEFAULT_TARGETS: Final = ("system", "1.7.0")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--libbpf", action="append", default=None, metavar="TARGET",
        help="libbpf target for the differential tests: system, VERSION[+asan|+fuzz|+cov],"
        " DIR (a libbpf tree) or the path of a .so (repeatable; default: system, 1.7.0)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "libbpf: needs a real libbpf (system libbpf1 or a build);"
                            " skipped with a reason when missing")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "libbpf_target" in metafunc.fixturenames:
        targets = metafunc.config.getoption("--libbpf") or list(DEFAULT_TARGETS)
        metafunc.parametrize("libbpf_target", targets, scope="session")


def target_or_skip(spec: str, *, build: bool = True) -> Target:
    """``resolve(spec)``; a target that cannot be had skips the test, saying why."""
    from oracle.errors import LibbpfError
    from oracle.libbpf.targets import resolve

    try:
        return resolve(spec, build=build)
    except LibbpfError as exc:
        pytest.skip(f"libbpf {spec} unavailable: {exc}")


def version_or_skip(spec: str) -> str:
    """The oracle release the target ``spec`` selects (skip if it cannot be had)."""
    from oracle.errors import LibbpfError
    from oracle.libbpf.targets import probe, require_table

    try:
        return require_table(probe(target_or_skip(spec)))
    except LibbpfError as exc:
        pytest.skip(f"libbpf {spec} unusable: {exc}")
