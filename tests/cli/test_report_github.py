"""``sec-oracle report github``: check and fuzz reports as a step summary and
``::error`` annotations; bad input is one line, exit 2, and writes nothing.

The fixtures are real reports: ``check --libbpf 1.7.0+asan --time 10`` (two known
bugs) and ``fuzz registry --libbpf 1.7.0+fuzz --time 15`` (no findings).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from oracle.campaign.github import command
from oracle.cli import main

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "fuzz" / "data" / "reports"


def report(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(["report", "github", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def errors(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("::error")]


def with_new_finding(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    finding = copy.deepcopy(data["findings"][0])
    finding.update({"known": None, "signature": "divergence:register:ret",
                    "summary": "answer differs: 100% wrong\non op 2",
                    "reproducer": "findings/x/repro.c"} | changes)
    data["findings"].append(finding)
    return data


def test_known_findings_are_summarized_without_annotations(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    code, out, err = run(capsys, str(DATA / "check.json"), "--summary", str(summary))
    assert (code, out, err) == (0, "", "")
    text = summary.read_text()
    assert text.startswith("### sec-oracle check: libbpf 1.7.0+asan (1.7.0, asan)")
    assert "**2 finding(s), none unexplained**; exit status 0" in text
    assert "| known | `crash:pointer-overflow:sec_def_matches` |" in text
    assert "| 1151 | 23214 | 2239.6 |" in text


def test_each_confirmed_unexplained_finding_is_one_error(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = with_new_finding(report("check.json"))
    data = with_new_finding(data, signature="divergence:unconfirmed", confirmed=False)
    summary = tmp_path / "summary.md"
    code, out, _ = run(capsys, str(write(tmp_path, "r.json", data)), "--summary", str(summary))
    assert code == 0
    assert errors(out) == [
        "::error title=sec-oracle check%3A libbpf 1.7.0+asan (1.7.0%2C asan)%3A"
        " divergence%3Aregister%3Aret::answer differs: 100%25 wrong%0Aon op 2"
        " (findings/x/repro.c)"]
    text = summary.read_text()
    assert "**1 unexplained finding(s)**" in text
    assert "| unexplained | `divergence:register:ret` | answer differs: 100% wrong on op 2 |" \
        in text
    assert "| unconfirmed | `divergence:unconfirmed` |" in text


def test_a_baseline_report_fails_by_its_verdicts(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = report("check.json")
    data["baseline"] = copy.deepcopy(data["libbpf"]) | {"target": "1.5.0"}
    data = with_new_finding(data, signature="baseline:away", fails=True, verdict="B agrees")
    data = with_new_finding(data, signature="baseline:towards", fails=False, verdict="A agrees")
    data["findings"][0]["fails"] = False
    code, out, _ = run(capsys, str(write(tmp_path, "r.json", data)), "--summary",
                       str(tmp_path / "s.md"))
    assert code == 0 and len(errors(out)) == 1 and "baseline%3Aaway" in errors(out)[0]
    text = (tmp_path / "s.md").read_text()
    assert text.startswith("### sec-oracle check --baseline 1.5.0:")
    assert "| A agrees | `baseline:towards` |" in text


def test_a_fuzz_report_with_errors_warns(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    data = report("fuzz.json")
    data["errors"] = ["libFuzzer exited with status 1 and saved nothing: see x.log"]
    data["interrupted"] = "SIGTERM"
    data = with_new_finding(data | {"findings": [report("check.json")["findings"][0]]})
    path = write(tmp_path, "fuzz.json", data)
    code, out, _ = run(capsys, str(path), "--summary", str(tmp_path / "s.md"))
    assert code == 0 and len(errors(out)) == 1
    warnings = [line for line in out.splitlines() if line.startswith("::warning")]
    assert len(warnings) == 2 and "SIGTERM" in warnings[0] and "x.log" in warnings[1]
    text = (tmp_path / "s.md").read_text()
    assert text.startswith("### sec-oracle fuzz registry: libbpf 1.7.0+fuzz")
    assert "| 7828 | 360 | 502 | 122 | 731 |" in text
    assert "- :warning: interrupted by SIGTERM" in text


def test_the_summary_is_appended_to_the_step_summary_or_printed(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "step_summary"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, _ = run(capsys, str(DATA / "check.json"), str(DATA / "fuzz.json"))
    assert (code, out) == (0, "")
    text = summary.read_text()
    assert text.startswith("earlier step\n### sec-oracle check")
    assert "### sec-oracle fuzz registry" in text and "**no findings**" in text
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    code, out, _ = run(capsys, str(DATA / "fuzz.json"))
    assert code == 0 and out.startswith("### sec-oracle fuzz registry")


@pytest.mark.parametrize(("content", "fragment"), [
    (None, "cannot read report"),
    ("{not json", "not JSON"),
    ("[1, 2]", "not a sec-oracle report"),
    ({"format": "other"}, "not a sec-oracle report"),
    ({"format": "libbpf-sec-oracle/report", "format_version": 2}, "format version 2"),
    ({"format": "libbpf-sec-oracle/report", "format_version": 1, "libbpf": {},
      "findings": [{"summary": "no signature"}]}, "malformed report"),
])
def test_bad_input_is_one_line_and_writes_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, content: object,
        fragment: str) -> None:
    bad = tmp_path / "bad.json" if content is None else write(tmp_path, "bad.json", content)
    unexplained = write(tmp_path, "good.json", with_new_finding(report("check.json")))
    summary = tmp_path / "s.md"
    code, out, err = run(capsys, str(unexplained), str(bad), "--summary", str(summary))
    assert code == 2 and out == "" and not summary.exists()
    assert err.count("\n") == 1 and err.startswith("sec-oracle: error: ") and fragment in err


def test_an_unwritable_summary_is_one_line(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    code, out, err = run(capsys, str(DATA / "check.json"), "--summary", str(tmp_path))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "cannot write the step summary" in err


def test_workflow_commands_escape_as_the_runner_reads_them() -> None:
    assert command("error", "a%b\r\nc", title="x: y, z") == \
        "::error title=x%3A y%2C z::a%25b%0D%0Ac"
    assert command("warning", "plain") == "::warning::plain"


def test_python_m_runs_the_same(tmp_path: Path) -> None:
    path = write(tmp_path, "r.json", with_new_finding(report("check.json")))
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-m", "oracle.campaign.github", str(path)],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("### sec-oracle check")
    assert len(errors(result.stdout)) == 1
