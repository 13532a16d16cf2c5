"""docs/divergences.md: one test per entry, on the oracle of every release."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oracle import Oracle
from oracle.ops import Answer, Op
from oracle.tables import known_versions
from tests.divergence_cases import CASES, expected

DOC = Path(__file__).resolve().parents[2] / "docs" / "divergences.md"


def test_every_documented_divergence_has_a_case() -> None:
    documented = re.findall(r"^\| (D\d+) \|", DOC.read_text(), flags=re.M)
    assert documented == [case_id for case_id, _, _ in CASES]


@pytest.mark.parametrize("version", known_versions())
@pytest.mark.parametrize(("case_id", "ops", "answers"), CASES, ids=[c[0] for c in CASES])
def test_divergence_on_oracle(
    version: str, case_id: str, ops: list[Op], answers: list[Answer]
) -> None:
    oracle = Oracle(version)
    assert oracle.run(ops) == expected(case_id, answers, oracle.release)
