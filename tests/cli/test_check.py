"""``sec-oracle check`` end to end: exit status, report, JUnit, known findings."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

from oracle.cli import main
from tests.targets import target_or_skip

pytestmark = pytest.mark.libbpf

REPORT_KEYS = {"format", "format_version", "libbpf", "seed", "jobs", "cases", "ops", "seconds",
               "ops_per_s", "findings", "unexplained", "exit_status"}


def test_conforming_release_exits_0_with_report_and_junit(tmp_path: Path) -> None:
    target_or_skip("1.7.0")
    report, junit = tmp_path / "r.json", tmp_path / "j.xml"
    code = main(["check", "--libbpf", "1.7.0", "--cases", "400", "--seed", "3",
                 "--findings", str(tmp_path / "f"), "--report", str(report),
                 "--junit", str(junit)])
    assert code == 0
    data = json.loads(report.read_text())
    assert set(data) >= REPORT_KEYS
    assert data["format"] == "libbpf-sec-oracle/report"
    assert data["libbpf"]["version"] == "1.7.0" and data["libbpf"]["so_sha256"]
    assert data["cases"] == 400 and data["ops"] > data["cases"]
    assert data["exit_status"] == 0
    assert {f["known"] for f in data["findings"]} <= {"KB3"}  # 1.7.0 has KB3: fresh cases
    suite = ElementTree.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("failures") == "0"


def test_jobs_run_independent_campaigns_and_merge(tmp_path: Path) -> None:
    target_or_skip("1.7.0")
    report = tmp_path / "r.json"
    code = main(["check", "--libbpf", "1.7.0", "--cases", "600", "--jobs", "2",
                 "--findings", str(tmp_path / "f"), "--report", str(report)])
    data = json.loads(report.read_text())
    assert code == 0 and data["jobs"] == 2
    assert data["cases"] == 600 and {f["known"] for f in data["findings"]} <= {"KB3"}


@pytest.mark.parametrize(("cases", "jobs"), [(1, 1), (10, 1), (300, 1), (7, 2)])
def test_cases_n_runs_n_cases(tmp_path: Path, cases: int, jobs: int) -> None:
    target_or_skip("1.7.0")
    report = tmp_path / "r.json"
    assert main(["check", "--libbpf", "1.7.0", "--cases", str(cases), "--jobs", str(jobs),
                 "--findings", str(tmp_path / "f"), "--report", str(report)]) == 0
    assert json.loads(report.read_text())["cases"] == cases


def test_known_libbpf_bug_is_reported_but_passes_unless_strict(tmp_path: Path) -> None:
    target_or_skip("1.7.0+asan")
    args = ["check", "--libbpf", "1.7.0+asan", "--cases", "1500", "--seed", "1"]
    report = tmp_path / "r.json"
    code = main([*args, "--findings", str(tmp_path / "f"), "--report", str(report)])
    data = json.loads(report.read_text())
    kb1 = [f for f in data["findings"] if f["known"] == "KB1"]
    assert kb1, data["findings"]
    assert kb1[0]["sanitizer"] in ("pointer-overflow", "heap-buffer-overflow")
    assert kb1[0]["ops"] <= 3
    assert code == 0 and data["unexplained"] == 0
    strict = main([*args, "--strict", "--findings", str(tmp_path / "g")])
    assert strict == 1
    finding_dir = Path(kb1[0]["trace"]).parent
    assert {p.name for p in finding_dir.iterdir()} == {"finding.json", "trace.jsonl", "repro.c",
                                                       "selftest.c", "summary.md"}
