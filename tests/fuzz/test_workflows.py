"""The CI workflows parse and call this repo's entry points as they exist."""

from __future__ import annotations

from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_workflow_parses_and_has_jobs(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    assert data["name"] and data["jobs"], path


def test_the_fuzz_workflow_runs_every_harness() -> None:
    from fuzz.cli import HARNESSES

    data = yaml.safe_load((WORKFLOWS / "sec_oracle_fuzz.yml").read_text())
    assert sorted(data["jobs"]["fuzz"]["strategy"]["matrix"]["harness"]) == sorted(HARNESSES)
