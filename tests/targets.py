"""Real libbpf targets for tests: resolved, or the test skipped with the reason."""

from __future__ import annotations

import pytest

from oracle.errors import LibbpfError
from oracle.libbpf.targets import Target, probe, require_table, resolve


def target_or_skip(spec: str, *, build: bool = True) -> Target:
    """``resolve(spec)``; a target that cannot be had skips the test, saying why."""
    try:
        return resolve(spec, build=build)
    except LibbpfError as exc:
        pytest.skip(f"libbpf {spec} unavailable: {exc}")


def version_or_skip(spec: str) -> str:
    """The oracle release the target ``spec`` selects (skip if it cannot be had)."""
    try:
        return require_table(probe(target_or_skip(spec)))
    except LibbpfError as exc:
        pytest.skip(f"libbpf {spec} unusable: {exc}")
