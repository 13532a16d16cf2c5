"""The recorded conformance corpus, replayed on the oracle alone (no libbpf needed).

Every trace under corpus/traces/<version>/ holds real libbpf answers; the
oracle of that release must give the same ones, and the corpus of each
release must drive the model through every one of its rules (every function
of the model modules runs at least once).  Every regression case under
corpus/traces/regressions/ (``sec-oracle corpus add``: a confirmed finding's
ops with the model's answers, what a fixed libbpf gives) must conform on the
oracle of its header's release too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import coverage
import pytest

from oracle.model.matching import match_keys
from oracle.model.versions import VERIFIED, profile, profile_for
from oracle.replay import replay
from oracle.tables import known_versions
from oracle.traces import read_header

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "corpus" / "traces"
REGRESSIONS = CORPUS / "regressions"
MODEL = ROOT / "oracle" / "model"
#: model code that op replay does not drive: the facade's str/bytes conversions
#: and raw-bytes opts parsing (tests/unit cover them), and the reference scan.
NOT_OP_RULES = {
    ("oracle.py", "prog_type_by_name"), ("oracle.py", "attach_type_by_name"),
    ("oracle.py", "find_sec_def"), ("oracle.py", "custom_handlers"), ("oracle.py", "version"),
    ("opts.py", "parse_opts_bytes"), ("opts.py", "callback"), ("opts.py", "coerce_opts"),
    ("opts.py", "field_present"), ("matching.py", "pattern_matches"),
    ("matching.py", "candidate_keys"), ("matching.py", "of"), ("versions.py", "versions"),
    ("oracle.py", "unregister_prog_handler"), ("oracle.py", "run"), ("matching.py", "__len__"),
    ("registry.py", "custom_handlers"), ("objects.py", "opened"),
    # pickling profiles (jobs > 1) and applying a known bug's fix: not replay's work
    ("versions.py", "__reduce__"), ("versions.py", "_rebuild"), ("versions.py", "with_fixes"),
}


def traces(version: str) -> list[Path]:
    return sorted((CORPUS / version).glob("*.jsonl"))


@pytest.mark.parametrize("version", VERIFIED)
def test_corpus_conforms_on_the_oracle(version: str) -> None:
    paths = traces(version)
    assert paths, f"no recorded corpus for {version}"
    result = replay(paths)
    bad = [t for t in result.traces if t.status != "conforms"]
    assert not bad, [(t.path, t.error or t.divergences[:1]) for t in bad]


def regression_cases() -> list[Path]:
    return sorted(REGRESSIONS.glob("*.jsonl"))


def test_regression_cases_are_shipped() -> None:
    assert regression_cases(), f"no regression cases under {REGRESSIONS}"


@pytest.mark.parametrize("path", regression_cases(), ids=lambda p: p.stem)
def test_regression_case_conforms_on_the_oracle(path: Path) -> None:
    assert read_header(path).origin == "regression", "not written by sec-oracle corpus add"
    (result,) = replay([path]).traces
    assert result.status == "conforms", result.error or result.divergences[:1]


def model_functions() -> list[tuple[str, str, int, int]]:
    found = []
    for path in sorted(MODEL.glob("*.py")):
        if path.name == "reference.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.end_lineno is not None:
                found.append((path.name, node.name, node.body[0].lineno, node.end_lineno))
    return found


@pytest.mark.parametrize("version", VERIFIED)
def test_corpus_reaches_every_rule(version: str) -> None:
    cov = coverage.Coverage(data_file=None, include=[str(MODEL / "*.py")])
    profile.cache_clear()  # so building the release profile runs under coverage too
    profile_for.cache_clear()
    match_keys.cache_clear()  # a pattern seen by an earlier test would skip the rule
    cov.start()
    try:
        replay(traces(version))
    finally:
        cov.stop()
    data = cov.get_data()
    executed = {Path(f).name: set(data.lines(f) or ()) for f in data.measured_files()}
    missed = [
        f"{name}:{func}" for name, func, first, last in model_functions()
        if (name, func) not in NOT_OP_RULES
        and not executed.get(name, set()) & set(range(first, last + 1))
    ]
    assert not missed, f"rules the {version} corpus never reaches: {missed}"


def test_every_verified_release_has_a_table_and_a_corpus() -> None:
    for version in VERIFIED:
        assert version in known_versions(), f"verified {version} has no shipped table"
        assert traces(version), f"verified {version} has no recorded corpus"
