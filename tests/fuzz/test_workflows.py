"""The CI workflows are valid GitHub Actions workflows (check-jsonschema's bundled
schema, offline), and call this repo's entry points as they exist."""

from __future__ import annotations

import configparser
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
no_validator = pytest.mark.skipif(importlib.util.find_spec("check_jsonschema") is None,
                                  reason="check-jsonschema is not installed (the dev extra)")


def load(name: str) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return data


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema",
         "vendor.github-workflows", *map(str, paths)],
        capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_workflow_parses_and_has_jobs(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    assert data["name"] and data["jobs"], path


@no_validator
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_workflow_is_valid_for_github(path: Path) -> None:
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


@no_validator
def test_the_validator_catches_a_misspelt_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\non: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
                   "    steps:\n      - uses: actions/checkout@v4\n        whith: {}\n")
    result = validate(bad)
    assert result.returncode == 1 and "whith" in result.stdout, result.stdout


def test_the_fuzz_workflow_runs_every_harness() -> None:
    from fuzz.cli import HARNESSES

    data = load("sec_oracle_fuzz.yml")
    assert sorted(data["jobs"]["fuzz"]["strategy"]["matrix"]["harness"]) == sorted(HARNESSES)


def _runs(job: dict[str, Any]) -> list[str]:
    return [step.get("run", "") for step in job["steps"]]


@pytest.mark.parametrize("job, report", [("check", "check.json"),
                                         ("fuzz", "fuzz-${{ matrix.harness }}.json")])
def test_every_report_is_summarized_and_kept_whatever_the_run_returned(
        job: str, report: str) -> None:
    steps = load("sec_oracle_fuzz.yml")["jobs"][job]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert any(f"--report {report}" in run for run in runs)
    summary = next(s for s in steps if "sec-oracle report github" in s.get("run", ""))
    assert summary["run"].rstrip().endswith(f"report github {report}")
    assert summary["if"].startswith("always()")
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and report in upload["with"]["path"]
    assert "findings/" in upload["with"]["path"]


def test_pull_requests_run_short_and_on_sanitizer_builds() -> None:
    jobs = load("sec_oracle_fuzz.yml")["jobs"]
    check, fuzz = (" ".join(_runs(jobs[name])) for name in ("check", "fuzz"))
    assert "--libbpf 1.7.0+asan" in check and "seconds=120" in check
    assert "--libbpf 1.7.0+fuzz" in fuzz and "seconds=120" in fuzz
    cfl = load("cflite_pr.yml")["jobs"]["pr"]["steps"]
    modes = [s["with"].get("mode") for s in cfl if "run_fuzzers" in s.get("uses", "")]
    assert modes == ["code-change"]


def _cflite_modes(job: dict[str, Any]) -> tuple[str | None, str | None]:
    build = next(s for s in job["steps"] if "build_fuzzers" in s.get("uses", ""))
    run = next(s for s in job["steps"] if "run_fuzzers" in s.get("uses", ""))
    assert build["with"].get("sanitizer") == run["with"].get("sanitizer")
    return run["with"]["mode"], run["with"].get("sanitizer")


def test_the_schedule_batch_fuzzes_prunes_and_measures_coverage() -> None:
    jobs = load("cflite_cron.yml")["jobs"]
    assert {name: _cflite_modes(job) for name, job in jobs.items()} == {
        "batch": ("batch", "address"), "prune": ("prune", "address"),
        "coverage": ("coverage", "coverage")}
    assert jobs["coverage"]["needs"] == "prune"


def test_the_entry_points_the_workflows_call_exist() -> None:
    from oracle.cli import build_parser

    parser = build_parser()
    for argv in (["report", "github", "r.json"], ["check", "--libbpf", "1.7.0+asan"],
                 ["fuzz", "registry"], ["libbpf", "build", "1.7.0+fuzz"]):
        assert parser.parse_args(argv).handler


def test_tox_has_the_short_ci_runs() -> None:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    env = tox["testenv:ci-short"]
    commands = env["commands"]
    assert "check --libbpf 1.7.0+asan --time 60 --report check.json" in commands
    assert "fuzz registry --libbpf 1.7.0+fuzz --time 60" in commands
    assert "--report fuzz-registry.json" in commands
    assert env["commands_post"].strip() == "sec-oracle report github check.json fuzz-registry.json"
    assert env["ignore_errors"] == "true" and "GITHUB_STEP_SUMMARY" in env["passenv"]
    assert env["package"] == "editable"  # the oracle reads corpus/ from the tree
