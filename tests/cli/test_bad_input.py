"""Bad input on the command line: one line on stderr, exit status 2, nothing lost.

Every subcommand is driven through ``oracle.cli.main`` in-process, as a user
would call ``sec-oracle``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from oracle.cli import main

LIBZ = Path("/lib/x86_64-linux-gnu/libz.so.1")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own exits
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sec-oracle: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["check", "--time", "0"], ["--time"]),
        (["check", "--time", "-1"], ["--time"]),
        (["check", "--cases", "x"], ["--cases"]),
        (["check", "--bogus-flag"], ["--bogus-flag"]),
        (["check", "--libbpf", "/no/such/libbpf.so"], ["/no/such/libbpf.so"]),
        (["check", "--libbpf", "1.6.0"], ["1.6.0"]),
        (["check", "--libbpf", "1.7.0+tsan"], ["1.7.0+tsan"]),
        (["tables", "show", "9.9.9"], ["9.9.9", "nearest"]),
        (["tables", "diff", "1.1.2", "0.8"], ["0.8"]),
        (["libbpf", "build", "nonsense"], ["nonsense"]),
        (["replay", "/no/such/trace.jsonl"], []),
        (["bench", "--rounds", "0"], ["--rounds"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragments: list[str]
) -> None:
    code, err = run(capsys, *argv)
    if argv[0] == "replay":  # replay reports per trace, then exits 2
        assert code == 2 and "Traceback" not in err
        return
    assert_one_line_error(code, err, *fragments)


@pytest.mark.skipif(not LIBZ.exists(), reason="no libz.so.1 to pose as a non-libbpf library")
def test_a_library_that_is_not_libbpf(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "check", "--libbpf", str(LIBZ), "--cases", "1")
    assert_one_line_error(code, err, "not a libbpf")


FUTURE = b'{"format": "libbpf-sec-oracle/trace", "format_version": 99}\n'


@pytest.mark.parametrize("content", [b"", b"{not json\n", b'{"format": "x"}\n', FUTURE])
def test_corrupt_traces(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                        content: bytes) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(content)
    code, captured = run(capsys, "replay", str(trace))
    out = captured
    assert code == 2
    assert "Traceback" not in out


def test_unwritable_report_loses_no_finding(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    findings = tmp_path / "findings"
    earlier = findings / "crash-x-0000"
    earlier.mkdir(parents=True)
    (earlier / "trace.jsonl").write_text("kept\n")
    code, err = run(capsys, "check", "--cases", "5", "--findings", str(findings),
                    "--report", str(tmp_path / "no" / "such" / "dir" / "r.json"))
    assert_one_line_error(code, err, "report")
    assert (earlier / "trace.jsonl").read_text() == "kept\n"


def test_report_path_that_is_a_directory(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    code, err = run(capsys, "check", "--cases", "5", "--report", str(tmp_path))
    assert_one_line_error(code, err, "directory")
