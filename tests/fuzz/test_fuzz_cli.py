"""``sec-oracle fuzz``: a libFuzzer run triaged into check's findings, report and exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fuzz.decode import encode_seed
from oracle.cli import main
from oracle.ops import ProgTypeByName, Register
from tests.targets import target_or_skip

pytestmark = pytest.mark.libbpf


@pytest.fixture(autouse=True)
def atheris_or_skip() -> None:
    pytest.importorskip("atheris", reason="atheris is not installed: pip install -e '.[fuzz]'")
    target_or_skip("1.7.0+fuzz")


def fuzz(tmp_path: Path, *args: str) -> tuple[int, dict[str, object]]:
    report = tmp_path / "report.json"
    code = main(["fuzz", *args, "--libbpf", "1.7.0+fuzz", "--report", str(report),
                 "--corpus", str(tmp_path / "corpus"), "--artifacts", str(tmp_path / "art"),
                 "--findings", str(tmp_path / "findings")])
    data: dict[str, object] = json.loads(report.read_text())
    assert data["exit_status"] == code
    return code, data


def test_a_clean_run_reports_progress_and_grows_the_corpus(tmp_path: Path) -> None:
    code, data = fuzz(tmp_path, "registry", "--time", "6")
    assert code == 0 and data["harness"] == "registry" and data["findings"] == []
    progress = data["progress"]
    assert isinstance(progress, list) and progress and progress[-1]["execs"] > 0
    assert progress[-1]["cov"] > 0
    assert len(list((tmp_path / "corpus").iterdir())) >= 30  # the committed seeds at least


def test_a_crash_is_triaged_into_a_known_finding(tmp_path: Path) -> None:
    """A seed with KB1's cause (allowed): libFuzzer saves the crash, triage names it."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "kb1").write_bytes(encode_seed([Register(b"", 1, 0), ProgTypeByName(b"x")]))
    code, data = fuzz(tmp_path, "registry", "--time", "8", "--allow-known")
    assert code == 0  # known bugs do not fail a run
    findings = data["findings"]
    assert isinstance(findings, list) and [f["known"] for f in findings] == ["KB1"], findings
    assert Path(findings[0]["trace"]).is_file()
    triage = data["triage"]
    assert isinstance(triage, list) and triage


def test_an_unknown_harness_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fuzz", "nope"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") <= 2
