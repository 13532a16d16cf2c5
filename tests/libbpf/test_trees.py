"""Source trees as targets: content-hash builds, tables from the tree, known bugs by range.

Trees are made in the test from Debian's 1.7.0 source (as a user's checkout would be):
a copy, a "next release" (version bumped, one SEC_DEF added), a KB1 fix (one guard), a
KB3 fix (programs keep a copy of their handler).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from oracle import sourcetree
from oracle.cli import main
from oracle.errors import LibbpfError, OracleError
from oracle.libbpf import debsrc
from oracle.libbpf.targets import parse_target, resolve
from oracle.model.oracle import Oracle
from oracle.model.versions import profile_for
from oracle.tables.trees import tree_table

KB1_GUARD = "\tif (sec && !sec[0])\n\t\treturn libbpf_err(-EINVAL);\n"
NEXT_SEC_DEF = '\tSEC_DEF("oracle_next+",\tKPROBE, 0, SEC_NONE),\n'


@pytest.fixture(scope="module")
def pristine() -> Path:
    try:
        return debsrc.source_tree("1.7.0")
    except LibbpfError as exc:
        pytest.skip(f"Debian's libbpf 1.7.0 source unavailable: {exc}")


def copy_tree(pristine: Path, into: Path) -> Path:
    shutil.copytree(pristine, into, ignore=shutil.ignore_patterns(".git"))
    return into


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def next_release(tree: Path) -> Path:
    """1.7.0 bumped to 1.8.0 with one built-in entry added after "socket"."""
    edit(tree / "src" / "Makefile", "LIBBPF_MINOR_VERSION := 7", "LIBBPF_MINOR_VERSION := 8")
    edit(tree / "src" / "libbpf_version.h", "#define LIBBPF_MINOR_VERSION 7",
         "#define LIBBPF_MINOR_VERSION 8")
    map_file = tree / "src" / "libbpf.map"
    map_file.write_text(map_file.read_text() + "\nLIBBPF_1.8.0 {\n} LIBBPF_1.7.0;\n")
    edit(tree / "src" / "libbpf.c", '\tSEC_DEF("socket",\t\tSOCKET_FILTER, 0, SEC_NONE),\n',
         '\tSEC_DEF("socket",\t\tSOCKET_FILTER, 0, SEC_NONE),\n' + NEXT_SEC_DEF)
    return tree


def kb1_fixed(tree: Path) -> Path:
    edit(tree / "src" / "libbpf.c",
         "\tif (!OPTS_VALID(opts, libbpf_prog_handler_opts))\n\t\treturn libbpf_err(-EINVAL);\n",
         "\tif (!OPTS_VALID(opts, libbpf_prog_handler_opts))\n\t\treturn libbpf_err(-EINVAL);\n"
         + KB1_GUARD)
    return tree


#: KB3's fix: a program keeps a copy of the custom handler it matched at open (the
#: registry's array may move or shift under it); set_type tells the fallback by a flag
KB3_FIX = [
    ("\tconst struct bpf_sec_def *sec_def;\n",
     "\tconst struct bpf_sec_def *sec_def;\n\tstruct bpf_sec_def sec_def_copy;\n"
     "\tbool sec_def_fallback;\n"),
    ("\t\tprog->sec_def = find_sec_def(prog->sec_name);\n",
     "\t\tprog->sec_def = find_sec_def(prog->sec_name);\n"
     "\t\tif (prog->sec_def && prog->sec_def->handler_id) {\n"
     "\t\t\tprog->sec_def_fallback = prog->sec_def == &custom_fallback_def;\n"
     "\t\t\tprog->sec_def_copy = *prog->sec_def;\n"
     "\t\t\tprog->sec_def_copy.sec = NULL; /* the registry's */\n"
     "\t\t\tprog->sec_def = &prog->sec_def_copy;\n"
     "\t\t}\n"),
    ("\tif (prog->sec_def != &custom_fallback_def)\n\t\tprog->sec_def = NULL;\n",
     "\tif (!prog->sec_def_fallback)\n\t\tprog->sec_def = NULL;\n"),
    ("static const struct bpf_sec_def *find_sec_def(const char *sec_name);\n",
     "static const struct bpf_sec_def *find_sec_def(const char *sec_name);\n"
     "static struct bpf_sec_def custom_fallback_def;\n"),
]


def kb3_fixed(tree: Path) -> Path:
    for old, new in KB3_FIX:
        edit(tree / "src" / "libbpf.c", old, new)
    return tree


# -- no build needed --------------------------------------------------------------


def test_hash_follows_what_the_build_reads(pristine: Path, tmp_path: Path) -> None:
    tree = copy_tree(pristine, tmp_path / "t")
    first = sourcetree.source_hash(tree)
    assert first == sourcetree.source_hash(pristine)
    (tree / "NOTES.txt").write_text("not an input\n")
    (tree / "src" / "libbpf.c").touch()
    assert sourcetree.source_hash(tree) == first
    edit(tree / "src" / "libbpf.c", "\tSEC_DEF(\"socket\"", "\tSEC_DEF(\"sockeT\"")
    assert sourcetree.source_hash(tree) != first
    assert sourcetree.release_of(tree) == "1.7.0"


def test_next_release_table_comes_from_the_tree(pristine: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    tree = next_release(copy_tree(pristine, tmp_path / "next"))
    assert sourcetree.release_of(tree) == "1.8.0"
    table = tree_table(tree)
    assert table.version == "1.8.0" and table.debian_version is None
    assert [d.sec for d in table.section_defs[:2]] == [b"socket", b"oracle_next+"]
    model = profile_for(table)
    assert model.status == "inferred from 1.7.0"
    assert Oracle(model).prog_type_by_name("oracle_next/x")[:2] == (0, 2)  # KPROBE
    assert main(["tables", "show", str(tree)]) == 0
    assert "oracle_next+" in capsys.readouterr().out
    assert main(["tables", "diff", "1.7.0", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "added (1):" in out and "oracle_next+" in out and "removed (0):" in out


def test_not_a_tree_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(LibbpfError, match="is not a libbpf source tree"):
        parse_target(str(tmp_path))
    assert main(["check", "--libbpf", f"{tmp_path}+asan", "--time", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a libbpf source tree" in err


def test_release_before_the_api_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "libbpf.c").write_text("/* old */\n")
    (tmp_path / "src" / "Makefile").write_text(
        "LIBBPF_MAJOR_VERSION := 0\nLIBBPF_MINOR_VERSION := 7\nLIBBPF_PATCH_VERSION := 0\n")
    with pytest.raises(LibbpfError, match=r"libbpf 0\.7\.0: .* from 0\.8\.0 on"):
        parse_target(str(tmp_path))


def test_unreadable_section_defs_name_the_construct(pristine: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    tree = copy_tree(pristine, tmp_path / "bad")
    edit(tree / "src" / "libbpf.c", '\tSEC_DEF("socket",\t\tSOCKET_FILTER, 0, SEC_NONE),',
         '\tSEC_DEF("socket",\t\tSOCKET_FILTER, 0, SEC_BOGUS),')
    with pytest.raises(OracleError, match="SEC_BOGUS"):
        tree_table(tree)
    assert main(["tables", "show", str(tree)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SEC_BOGUS" in err


# -- builds -------------------------------------------------------------------------


def build_cli(spec: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oracle", "libbpf", "build", spec],
                          capture_output=True, text=True, check=False, timeout=900)


def test_tree_builds_are_cached_by_content(pristine: Path, tmp_path: Path) -> None:
    tree = kb1_fixed(copy_tree(pristine, tmp_path / "kb1"))
    # two runs building the same new state at once share one build
    runs = [subprocess.Popen([sys.executable, "-m", "oracle", "libbpf", "build", str(tree)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outs = [run.communicate(timeout=900) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outs
    assert outs[0][0] == outs[1][0] and outs[0][0].strip().endswith("libbpf.so.1")
    so = Path(outs[0][0].strip())
    target = resolve(str(tree))
    assert target.kind == "tree" and target.path == so and target.version == "1.7.0"
    assert target.source_sha256 == sourcetree.source_hash(tree)
    built_at = so.resolve().stat().st_mtime_ns
    assert resolve(str(tree)).path.resolve().stat().st_mtime_ns == built_at  # reused
    edit(tree / "src" / "libbpf.c", KB1_GUARD, KB1_GUARD + "\t/* one more line */\n")
    assert resolve(str(tree)).path != so  # one edited line: a new build
    with pytest.raises(LibbpfError, match="not built in this state"):
        resolve(f"{tree}+asan", build=False)


def test_tree_that_does_not_build(pristine: Path, tmp_path: Path) -> None:
    tree = copy_tree(pristine, tmp_path / "broken")
    edit(tree / "src" / "libbpf.c", "int libbpf_register_prog_handler(",
         "#error deliberately broken\nint libbpf_register_prog_handler(")
    result = build_cli(str(tree))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "deliberately broken" in result.stderr


def run_check(tmp_path: Path, spec: str, seconds: str) -> dict[str, Any]:
    tmp_path.mkdir(exist_ok=True)
    report = tmp_path / "report.json"
    code = main(["check", "--libbpf", spec, "--time", seconds, "--report", str(report),
                 "--findings", str(tmp_path / "findings")])
    data: dict[str, Any] = json.loads(report.read_text())
    assert data["exit_status"] == code
    return data


def test_next_release_tree_conforms(pristine: Path, tmp_path: Path) -> None:
    tree = next_release(copy_tree(pristine, tmp_path / "next"))
    data = run_check(tmp_path, str(tree), "8")
    libbpf = data["libbpf"]
    assert isinstance(libbpf, dict)
    assert libbpf["version"] == "1.8.0" and libbpf["profile"] == "inferred from 1.7.0"
    assert libbpf["source_sha256"] == sourcetree.source_hash(tree)
    assert data["exit_status"] == 0  # 1.7.0's KB3 stays in the tree: known, fresh cases
    assert {f["known"] for f in data["findings"]} <= {"KB3"}, data["findings"]


def test_kb1_fix_conforms_and_is_reported_fixed(pristine: Path, tmp_path: Path) -> None:
    tree = kb1_fixed(copy_tree(pristine, tmp_path / "kb1"))
    data = run_check(tmp_path, str(tree), "15")
    assert data["exit_status"] == 0
    assert data["known_bugs_fixed"] == ["KB1"]
    findings = data["findings"]
    assert isinstance(findings, list)
    assert not [f for f in findings if f["known"] == "KB1"], findings
    assert not [f for f in findings if f["confirmed"] and f["known"] != "KB3"], findings


def test_kb3_fix_conforms_on_every_case_with_its_cause(pristine: Path, tmp_path: Path) -> None:
    tree = kb3_fixed(copy_tree(pristine, tmp_path / "kb3"))
    fixed = run_check(tmp_path / "fixed", str(tree), "15")
    assert fixed["exit_status"] == 0 and fixed["findings"] == [], fixed["findings"]
    causes = fixed["known_bug_causes"]
    assert isinstance(causes, dict)
    assert causes["KB3"]["cases"] > 10 and causes["KB3"]["conformed"] == causes["KB3"]["cases"]
    unfixed = run_check(tmp_path / "unfixed", "1.7.0", "15")  # the same cases find KB3 there
    findings = unfixed["findings"]
    assert isinstance(findings, list) and findings
    assert {f["known"] for f in findings} == {"KB3"}, findings


# -- what a patch changed (check --baseline) ------------------------------------------


def run_baseline(tmp_path: Path, a: str, b: str, seconds: str) -> tuple[int, dict[str, object]]:
    report = tmp_path / "baseline.json"
    code = main(["check", "--libbpf", a, "--baseline", b, "--time", seconds, "--report",
                 str(report), "--findings", str(tmp_path / "findings")])
    data: dict[str, object] = json.loads(report.read_text())
    assert data["exit_status"] == code
    return code, data


def test_baseline_reports_a_changed_builtin_entry(pristine: Path, tmp_path: Path) -> None:
    tree = copy_tree(pristine, tmp_path / "sock")
    edit(tree / "src" / "libbpf.c", '\tSEC_DEF("socket",\t\tSOCKET_FILTER, 0, SEC_NONE),',
         '\tSEC_DEF("socket",\t\tKPROBE, 0, SEC_NONE),')
    code, data = run_baseline(tmp_path, str(tree), "1.7.0", "20")
    assert code == 0  # the tree's own table says KPROBE: A agrees with the model
    findings = data["findings"]
    assert isinstance(findings, list) and findings
    baseline = data["baseline"]
    assert isinstance(baseline, dict) and baseline["target"] == "1.7.0"
    judged = [f for f in findings if not f["verdict"].startswith("not judged")]  # KB3 causes
    assert judged
    for finding in judged:
        assert finding["verdict"] == "A agrees with the model", finding
        trace = Path(finding["trace"]).read_text()
        assert '"socket' in trace, trace  # every difference is the changed entry's
        assert (Path(finding["trace"]).parent / "repro.c").is_file()


def test_baseline_flags_a_change_away_from_the_model(tmp_path: Path) -> None:
    from oracle.libbpf.mutants import build_mutant

    try:
        broken = build_mutant("1.7.0", "prog-type-outs-on-error")
    except LibbpfError as exc:
        pytest.skip(f"mutant build unavailable: {exc}")
    code, data = run_baseline(tmp_path, str(broken), "1.7.0", "15")
    assert code == 1
    findings = data["findings"]
    assert isinstance(findings, list)
    assert any(f["verdict"] == "B agrees with the model" and f["confirmed"]
               for f in findings), findings
