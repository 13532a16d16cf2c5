"""``sec-oracle coverage``: the +cov build measured on the conformance corpus; bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from oracle import coverage
from oracle.cli import main
from oracle.errors import OracleError
from oracle.libbpf import build as builder
from oracle.libbpf.targets import detect_variant, parse_target
from tests.cli.test_bad_input import assert_one_line_error, run
from tests.targets import target_or_skip

TRACES = Path(__file__).resolve().parents[2] / "corpus" / "traces" / "1.7.0"


def _llvm_or_skip() -> None:
    for tool in ("llvm-profdata", "llvm-cov"):
        try:
            coverage.find_tool(tool)
        except OracleError as exc:
            pytest.skip(str(exc))
    if shutil.which(builder.CC) is None:
        pytest.skip("clang missing: apt-get install clang")


def test_cov_variant_is_a_target_spelling() -> None:
    assert parse_target("1.7.0+cov") == ("release", "1.7.0", "cov", None)
    assert "-fcoverage-mapping" in builder.flags("cov").cflags
    assert "-fsanitize" not in builder.flags("cov").cflags
    assert coverage.cov_spec("1.7.0") == "1.7.0+cov"
    assert coverage.cov_spec("1.7.0+cov") == "1.7.0+cov"


def test_conformance_corpus_covers_every_handler_function(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _llvm_or_skip()
    target = target_or_skip("1.7.0+cov")
    assert detect_variant(target.path) == "cov"
    report = tmp_path / "cov.json"
    code = main(["coverage", "--libbpf", "1.7.0", "--traces", str(TRACES),
                 "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 0
    for name in coverage.FUNCTIONS:
        assert f"| {name} |" in out
    rows = {row["function"]: row for row in json.loads(report.read_text())["functions"]}
    assert set(rows) == set(coverage.FUNCTIONS)
    for row in rows.values():
        assert row["lines_total"] > 0, row
    assert rows["libbpf_register_prog_handler"]["lines_covered"] > 0
    assert rows["libbpf_register_prog_handler"]["branches_covered"] > 0


def test_report_without_a_listed_function_is_refused() -> None:
    text = ("File '/x/libbpf.c':\n"
            "Name    Regions    Miss   Cover     Lines    Miss   Cover  Branches    Miss   Cover\n"
            "libbpf_register_prog_handler  63  3  95.24%  34  3  91.18%  36  3  91.67%\n")
    with pytest.raises(OracleError, match="no data for libbpf_unregister_prog_handler"):
        coverage.parse_report(text)
    with pytest.raises(OracleError, match="unreadable llvm-cov report row"):
        coverage.parse_report(text + "garbage row\n")
    rows = coverage.parse_report(text, ["libbpf_register_prog_handler"])
    assert rows["libbpf_register_prog_handler"].lines_covered == 31


def test_uncovered_lines_read_as_ranges() -> None:
    shown = "libbpf.c:find_sec_def:\n 10|      0|{\n 11|       |\n 12|      0|x\n 13|      0|y\n" \
            " 14|      5|z\n"
    assert coverage.parse_show(shown) == {"find_sec_def": [10, 12, 13]}
    assert coverage.line_ranges([10, 12, 13]) == ["10", "12-13"]


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["coverage", "--libbpf", "1.7.0+asan"], ["drop +asan"]),
        (["coverage", "--libbpf", "system"], ["release or a libbpf source tree"]),
        (["coverage", "--libbpf", "1.7.0", "--traces", "/nonexistent"], ["not a directory"]),
        (["coverage", "--libbpf", "1.7.0", "--check-seconds", "0"], ["--check-seconds"]),
    ],
)
def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                               fragments: list[str]) -> None:
    code, err = run(capsys, *argv)
    assert_one_line_error(code, err, *fragments)


def test_missing_llvm_tools_is_one_line(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target_or_skip("1.7.0+cov")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(coverage, "TOOL_DIRS", [])
    code, err = run(capsys, "coverage", "--libbpf", "1.7.0", "--traces", str(TRACES))
    assert_one_line_error(code, err, "llvm-profdata not found", "llvm-14")
