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


def bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> str:
    """Run ``sec-oracle fuzz`` expecting bad input: exit 2, one line, no report."""
    report = tmp_path / "report.json"
    code = main(["fuzz", *args, "--time", "1", "--report", str(report),
                 "--artifacts", str(tmp_path / "art"), "--findings", str(tmp_path / "findings")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("sec-oracle: error: "), err
    assert not report.exists()
    return err


@pytest.mark.parametrize("spec", ["1.7.0", "1.7.0+asan"])
def test_a_target_that_is_not_a_fuzz_build_is_one_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, spec: str) -> None:
    err = bad_input(capsys, tmp_path, "registry", "--libbpf", spec,
                    "--corpus", str(tmp_path / "corpus"))
    variant = "asan" if "+asan" in spec else "plain"
    assert f"libbpf {spec} is a" in err and f"{variant} build" in err, err
    assert "sec-oracle libbpf build 1.7.0+fuzz" in err and "--python-only" in err, err
    assert not (tmp_path / "corpus").exists()  # refused before anything was set up


def test_the_system_libbpf_is_refused_without_python_only(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target_or_skip("system")
    err = bad_input(capsys, tmp_path, "registry", "--libbpf", "system",
                    "--corpus", str(tmp_path / "corpus"))
    assert "libbpf system (" in err and "plain build" in err and "+fuzz" in err, err


def test_a_corpus_file_that_is_not_fuzz_input_is_named(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good").write_bytes(encode_seed([ProgTypeByName(b"kprobe/x")]))
    (corpus / "empty").write_bytes(b"")
    err = bad_input(capsys, tmp_path, "registry", "--libbpf", "1.7.0+fuzz",
                    "--corpus", str(corpus))
    assert f"corpus file {corpus / 'empty'} is not fuzz input" in err, err
    assert sorted(p.name for p in corpus.iterdir()) == ["empty", "good"]  # nothing seeded


def test_a_kb1_only_file_is_bad_input_unless_known_bugs_are_allowed(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``Register(sec="")`` is dropped on a sanitizer build: nothing left to run."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "kb1").write_bytes(encode_seed([Register(b"", 1, 0)]))
    err = bad_input(capsys, tmp_path, "registry", "--libbpf", "1.7.0+fuzz",
                    "--corpus", str(corpus))
    assert "kb1 is not fuzz input" in err, err


def test_a_file_libfuzzer_wrote_is_not_checked(tmp_path: Path) -> None:
    """libFuzzer names what it saves by the SHA-1 of its bytes: its own files pass."""
    import hashlib

    from fuzz import checks
    from fuzz.cli import check_corpus

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / hashlib.sha1(b"").hexdigest()).write_bytes(b"")
    check_corpus(corpus, False, checks.policy("1.7.0", "fuzz"))


def test_an_unreadable_corpus_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "seed").write_bytes(encode_seed([ProgTypeByName(b"kprobe/x")]))
    real = Path.read_bytes

    def unreadable(self: Path) -> bytes:  # chmod 000 does not stop root
        if self.parent == corpus:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    err = bad_input(capsys, tmp_path, "registry", "--libbpf", "1.7.0+fuzz",
                    "--corpus", str(corpus))
    assert f"cannot read the fuzz corpus {corpus}: Permission denied" in err, err
