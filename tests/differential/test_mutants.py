"""``sec-oracle check`` kills every deliberately broken libbpf build (``oracle.libbpf.mutants``).

For each mutant of 1.7.0: ``check --time 30`` exits 1 with at least one finding
that is not a known libbpf bug, and that finding's minimal trace has at most 5
ops.  The unmutated 1.7.0 build conforms (exit 0) in a 10 s campaign.

The campaigns run as ``python -m oracle check`` subprocesses, several at once
(each is one check process plus its worker, about one core between them), so
the file takes about ``ceil(15 / jobs) * 30`` s plus the builds (about 7 s per
mutant, cached afterwards).  Seconds until the first finding appeared on disk
(the kill time, shrinking included, measured from process start) are recorded
as the test property ``seconds_to_kill``, printed, and collected in
``kill-matrix.json`` under the module's temporary directory; they are not
asserted, since they depend on the machine and its load.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from oracle.cli import main
from oracle.errors import LibbpfError
from oracle.libbpf import build as builder
from oracle.libbpf import debsrc
from oracle.libbpf.mutants import (
    MUTANTS,
    Mutant,
    build_mutant,
    check_applies,
    mutant,
    mutant_dir,
    patched_tree,
)
from oracle.traces import read_trace

VERSION = "1.7.0"
CHECK_SECONDS = 30
BASELINE_SECONDS = 10
MAX_TRACE_OPS = 5
BASELINE = "unmutated"
#: a campaign that has not ended this long after its budget is hung
GRACE_S = 150.0
POLL_S = 0.05


@dataclass
class Campaign:
    """One finished ``check`` run."""

    name: str
    status: int
    report: dict[str, Any] | None
    findings: Path
    seconds_to_first_finding: float | None
    wall_seconds: float
    output: str


# -- fast checks of the data (no build) ------------------------------------------------


def test_names_are_unique_and_well_formed() -> None:
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names)) >= 8
    for m in MUTANTS:
        assert m.name.replace("-", "").isalnum() and m.name == m.name.lower(), m.name
        assert not m.name.endswith(tuple(f"-{v}" for v in builder.VARIANTS)), m.name
        assert f"MUTANT {m.name}" in m.new, f"{m.name}: new text lacks its MUTANT comment"
        assert m.old != m.new and m.description
        assert set(m.versions) <= set(debsrc.RELEASES)


def test_apply_requires_exactly_one_occurrence() -> None:
    m = Mutant("demo", "demo", old="needle", new="/* MUTANT demo */")
    assert m.apply("hay needle hay", VERSION) == "hay /* MUTANT demo */ hay"
    for text, count in (("hay", 0), ("needle needle", 2)):
        with pytest.raises(LibbpfError) as exc:
            m.apply(text, VERSION)
        message = str(exc.value)
        assert "\n" not in message
        assert f"occurs {count} times" in message and "demo" in message


def test_unknown_mutant_and_release_are_one_line_errors() -> None:
    with pytest.raises(LibbpfError, match="unknown mutant 'nope': use one of plus-any-suffix"):
        mutant("nope")
    with pytest.raises(LibbpfError, match=re.escape("unknown libbpf version '9.9'")):
        check_applies(MUTANTS[0], "9.9")
    narrow = Mutant("narrow", "d", old="a", new="b", versions=("1.7.0",))
    with pytest.raises(LibbpfError, match=re.escape("written for libbpf 1.7.0, not 1.1.2")):
        check_applies(narrow, "1.1.2")


def test_cli_lists_and_rejects(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["libbpf", "mutant", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == [m.name for m in MUTANTS]
    assert main(["libbpf", "mutant", "build", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sec-oracle: error: unknown mutant 'nope'") and err.count("\n") == 1


# -- source edits against the real release trees -------------------------------------


@pytest.mark.libbpf
@pytest.mark.parametrize("version", sorted(debsrc.RELEASES))
def test_every_mutant_applies_once(version: str, tmp_path: Path) -> None:
    pristine = debsrc.source_tree(version)
    original = (pristine / "src" / "libbpf.c").read_bytes()
    for m in MUTANTS:
        if version not in m.versions:
            continue
        tree = patched_tree(pristine, m, version, tmp_path / m.name)
        before = (pristine / m.file).read_text(errors="surrogateescape")
        patched = (tree / m.file).read_text(errors="surrogateescape")
        assert patched == before.replace(m.old, m.new) != before
        assert patched.count(f"MUTANT {m.name}") == 1
    assert (pristine / "src" / "libbpf.c").read_bytes() == original


# -- the campaigns ---------------------------------------------------------------------


def _toolchain_missing() -> str | None:
    try:
        builder.preflight()
    except LibbpfError as exc:
        return str(exc)
    return None


def _run_check(name: str, so: Path, seconds: int, root: Path) -> Campaign:
    """``python -m oracle check`` on ``so``; the time its first finding appeared on disk."""
    work = root / name
    findings = work / "findings"
    report = work / "r.json"
    work.mkdir(parents=True)
    argv = [sys.executable, "-m", "oracle", "check", "--libbpf", str(so),
            "--time", str(seconds), "--findings", str(findings), "--report", str(report)]
    first: float | None = None
    with open(work / "output.txt", "w+") as output:
        started = time.monotonic()
        process = subprocess.Popen(argv, cwd=work, stdout=output, stderr=subprocess.STDOUT)
        try:
            while process.poll() is None:
                if time.monotonic() - started > seconds + GRACE_S:
                    process.kill()
                    process.wait()
                    break
                if first is None and _published_findings(findings):
                    first = time.monotonic() - started
                time.sleep(POLL_S)
        finally:
            if process.poll() is None:  # pragma: no cover - interrupted
                process.kill()
                process.wait()
        wall = time.monotonic() - started
        if first is None and _published_findings(findings):
            first = wall
        output.seek(0)
        text = output.read()
    data = json.loads(report.read_text()) if report.is_file() else None
    return Campaign(name, process.returncode, data, findings, first, wall, text)


def _published_findings(findings: Path) -> list[Path]:
    if not findings.is_dir():
        return []
    return [p for p in findings.iterdir() if not p.name.startswith(".")]


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Campaign]:
    """Every mutant's ``check --time 30`` and the unmutated build's ``--time 10``."""
    missing = _toolchain_missing()
    if missing is not None:
        pytest.skip(f"cannot build libbpf mutants: {missing}")
    jobs: list[tuple[str, Path, int]] = [(BASELINE, builder.build(VERSION), BASELINE_SECONDS)]
    jobs += [(m.name, build_mutant(VERSION, m.name), CHECK_SECONDS) for m in MUTANTS]
    root = tmp_path_factory.mktemp("mutants")
    workers = min(len(jobs), max(2, 2 * (os.cpu_count() or 1)))

    def run(job: tuple[str, Path, int]) -> Campaign:
        name, so, seconds = job
        return _run_check(name, so, seconds, root)

    with ThreadPoolExecutor(workers) as pool:
        results = {c.name: c for c in pool.map(run, jobs)}
    matrix = {name: {k: v for k, v in asdict(c).items() if k not in ("report", "output")}
              | _matrix_row(c) for name, c in results.items()}
    (root / "kill-matrix.json").write_text(json.dumps(matrix, indent=2, default=str) + "\n")
    return results


def _unknown(campaign: Campaign) -> list[dict[str, Any]]:
    assert campaign.report is not None
    return [f for f in campaign.report["findings"] if f["known"] is None]


def _matrix_row(campaign: Campaign) -> dict[str, Any]:
    """Killed?, and the first unexplained finding (the kill): its ops and signature."""
    if campaign.report is None:
        return {"killed": False}
    unknown = _unknown(campaign)
    first = unknown[0] if unknown else None
    return {
        "killed": campaign.status == 1 and bool(unknown),
        "ops": first["ops"] if first else None,
        "signature": first["signature"] if first else None,
        "cases": campaign.report["cases"],
        "unexplained": [(f["ops"], f["signature"], f["count"]) for f in unknown],
    }


def _describe(campaign: Campaign) -> str:
    return f"{campaign.name}: exit {campaign.status}\n{campaign.output[-3000:]}"


@pytest.mark.libbpf
@pytest.mark.timeout(CHECK_SECONDS * len(MUTANTS) + 900)
@pytest.mark.parametrize("name", [m.name for m in MUTANTS])
def test_check_kills_mutant(name: str, campaigns: dict[str, Campaign],
                            record_property: Callable[[str, object], None]) -> None:
    campaign = campaigns[name]
    assert campaign.status == 1, _describe(campaign)
    assert campaign.report is not None, _describe(campaign)
    assert campaign.report["libbpf"]["path"] == str(mutant_dir(VERSION, name) / "libbpf.so.1")
    assert campaign.report["libbpf"]["version"] == VERSION
    unknown = _unknown(campaign)
    assert unknown, f"{name}: every finding is a known bug\n{_describe(campaign)}"
    for finding in unknown:
        trace = read_trace(campaign.findings / Path(finding["trace"]).parent.name / "trace.jsonl")
        assert len(trace.records) == finding["ops"], finding
    # The report lists findings in the order they were found: the first one killed it.
    kill = unknown[0]
    trace = read_trace(campaign.findings / Path(kill["trace"]).parent.name / "trace.jsonl")
    assert len(trace.records) <= MAX_TRACE_OPS, f"{name}: {kill}"
    record_property("seconds_to_kill", campaign.seconds_to_first_finding)
    record_property("trace_ops", len(trace.records))
    record_property("signature", kill["signature"])
    print(f"{name}: killed after {campaign.seconds_to_first_finding} s,"
          f" {len(trace.records)} ops, {kill['signature']}")


@pytest.mark.libbpf
@pytest.mark.timeout(CHECK_SECONDS * len(MUTANTS) + 900)
def test_unmutated_build_conforms(campaigns: dict[str, Campaign]) -> None:
    campaign = campaigns[BASELINE]
    assert campaign.status == 0, _describe(campaign)
    assert campaign.report is not None
    assert all(f["known"] for f in campaign.report["findings"]), _describe(campaign)
    assert campaign.report["cases"] > 0
