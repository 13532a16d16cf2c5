"""Findings on disk: one directory per signature, written atomically.

Layout under ``--findings DIR``::

    DIR/<slug>/finding.json   machine-readable: signature, kind, summary, known, libbpf, paths
    DIR/<slug>/trace.jsonl    the minimal trace, with libbpf's answers (none for a crash)
    DIR/<slug>/repro.c        standalone reproducer: cc repro.c -lbpf && ./a.out
    DIR/<slug>/selftest.c     the same as a libbpf prog_tests selftest (test_<name>)
    DIR/<slug>/summary.md     what a bug report needs, in prose

Rules:
- ``<slug>`` is derived from the signature alone (readable part + short hash),
  so the same kind of finding always lands in the same place: deduplication
  across cases, jobs and runs.
- A finding directory is built under a temporary name and renamed into place;
  an existing directory is never touched (the first, already minimal, wins).
  An interrupted or failing run therefore never loses or half-writes a
  finding that was already there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oracle.campaign.compare import show
from oracle.campaign.confirm import ReproRun, SanitizerRun, plain_twin_info, run_repro
from oracle.campaign.known import KnownBug
from oracle.campaign.runner import CaseOutcome
from oracle.errors import OracleError
from oracle.libbpf.targets import Target
from oracle.ops import OP_NAMES, Answer, Op
from oracle.repro_c import emit_c
from oracle.selftest_c import emit_selftest, selftest_name
from oracle.traces import LibbpfInfo, Record, Trace, TraceHeader, encode_op, write_trace


def slug(signature: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", signature).strip("-")[:80]
    digest = hashlib.sha256(signature.encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


@dataclass
class Finding:
    """One deduplicated finding of a campaign."""

    signature: str
    kind: str
    summary: str
    outcome: CaseOutcome  # the minimal, confirmed case
    known: KnownBug | None = None
    count: int = 1
    directory: Path | None = None
    seeds: list[int] = field(default_factory=list)
    #: why the finding's directory could not be written (a full disk), if it could not
    write_error: str | None = None
    #: a plain build's crash run again on its ASan twin (``confirm.on_sanitizer``)
    sanitizer_run: SanitizerRun | None = None
    #: repro.c compiled and run against the build, and its plain twin (``confirm.run_repro``)
    repro_runs: list[ReproRun] = field(default_factory=list)

    def as_report(self) -> dict[str, Any]:
        crash = self.outcome.crash
        return {
            "kind": self.kind,
            "signature": self.signature,
            "summary": self.summary,
            "known": self.known.id if self.known else None,
            "confirmed": self.outcome.confirmed,
            "count": self.count,
            "ops": len(self.outcome.ops),
            "sanitizer": crash.sanitizer if crash else None,
            "frames": list(crash.frames[:5]) if crash else [],
            "trace": str(self.directory / "trace.jsonl") if self.directory else None,
            "reproducer": str(self.directory / "repro.c") if self.directory else None,
            "write_error": self.write_error,
            "sanitizer_run": self.sanitizer_run.as_report() if self.sanitizer_run else None,
            "repro_runs": [run.as_report() for run in self.repro_runs],
        }


def describe_ops(ops: tuple[Op, ...], expected: tuple[Answer, ...]) -> list[str]:
    lines = []
    for i, (op, want) in enumerate(zip(ops, expected, strict=False)):
        lines.append(f"{i}. `{OP_NAMES[type(op)]}({json.dumps(encode_op(op).get('args', {}))})`"
                     f" -> oracle: {show(want, op)}")
    return lines


def summary_markdown(finding: Finding, libbpf: LibbpfInfo) -> str:
    outcome = finding.outcome
    name = selftest_name(slug(finding.signature))
    lines = [
        f"# {finding.summary}",
        "",
        f"- signature: `{finding.signature}`",
        f"- libbpf: {libbpf.version} ({libbpf.variant}), {libbpf.path or ''}"
        f" sha256 {libbpf.so_sha256 or 'unknown'}",
        f"- known: {finding.known.id + ' - ' + finding.known.title if finding.known else 'no'}",
        f"- seen {finding.count} time(s) in this run",
        "",
        "## Minimal op sequence",
        "",
        *describe_ops(outcome.ops, outcome.expected),
        "",
    ]
    if outcome.divergence is not None:
        divergence = outcome.divergence
        lines += ["## Divergence", "", divergence.describe() + ".", "",
                  *(f"- {fact}" for fact in divergence.facts()), ""]
    if outcome.crash is not None:
        crash = outcome.crash
        lines += ["## Crash", "", f"- kind: {crash.kind}, sanitizer: {crash.sanitizer},"
                  f" signal: {crash.signal}, exit code: {crash.exit_code}",
                  f"- message: {crash.message}", "", "```", *crash.frames, "```", ""]
    rerun = finding.sanitizer_run
    if rerun is not None:
        lines += ["## On the sanitizer build", ""]
        if rerun.reason is not None:
            lines += [f"Not run: {rerun.reason}", ""]
        elif not rerun.crashed:
            lines += [f"{rerun.target}: the same case does not crash.", ""]
        else:
            lines += [f"{rerun.target}: {rerun.kind} ({rerun.sanitizer})", "", "```",
                      *rerun.frames, "```", ""]
    if finding.repro_runs:
        lines += ["## repro.c, compiled and run", "",
                  *(f"- {run.sentence()}" for run in finding.repro_runs), ""]
    lines += ["## Reproduce", "", "```sh", "cc repro.c -lbpf -o repro && ./repro",
              "sec-oracle replay trace.jsonl            # against the oracle",
              "```", "",
              "As a libbpf selftest for the fix's patch: drop selftest.c into"
              f" tools/testing/selftests/bpf/prog_tests/ as {name}.c"
              f" (`./test_progs -t {name}`).", ""]
    return "\n".join(lines)


def write_finding(root: Path, finding: Finding, libbpf: LibbpfInfo, seed: int | None,
                  target: Target | None = None) -> Path:
    """Write ``finding`` under ``root`` unless its signature is already there; its
    repro.c is compiled and run against the build (and, for a sanitizer ``target``, its
    plain twin when built) first (``confirm.run_repro``)."""
    final = root / slug(finding.signature)
    if final.exists():
        finding.directory = final
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".finding-", dir=root))
    except OSError as exc:
        raise OracleError(f"cannot write findings under {root}: {exc.strerror}") from None
    try:
        _write_files(tmp, finding, libbpf, seed, target)
        os.rename(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists():  # another job's copy of it landed first: that one stands
            raise OracleError(f"cannot write finding {final}: {exc.strerror}") from None
    finding.directory = final
    return final


def amend_finding(finding: Finding, libbpf: LibbpfInfo) -> None:
    """Rewrite summary.md and finding.json of a finding this run wrote, after something
    was learnt of it later (its crash on the sanitizer twin); each file replaced whole."""
    directory = finding.directory
    assert directory is not None
    stored = json.loads((directory / "finding.json").read_text())
    data = stored | {key: value for key, value in finding.as_report().items()
                     if key not in ("trace", "reproducer")}
    for name, text in (("summary.md", summary_markdown(finding, libbpf)),
                       ("finding.json", json.dumps(data, indent=2) + "\n")):
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.chmod(tmp, (directory / name).stat().st_mode)  # the mode it was written with
            os.replace(tmp, directory / name)
        except OSError as exc:
            finding.write_error = f"cannot amend {directory / name}: {exc.strerror}"
            return


def repro_header(runs: Sequence[ReproRun]) -> str:
    """A comment saying with which builds the program below was run, and what it did."""
    if not runs:
        return ""
    lines = ["/*", " * sec-oracle ran this program when it wrote the finding:"]
    lines += [f" * - {run.sentence().replace('*/', '* /')}" for run in runs]
    return "\n".join([*lines, " */", ""]) + "\n"


def keep_finding(root: Path, finding: Finding, libbpf: LibbpfInfo, seed: int | None,
                 target: Target | None = None) -> None:
    """``write_finding``; one that cannot be written (a full disk) keeps the reason in
    ``write_error`` and stays in the run's report."""
    try:
        write_finding(root, finding, libbpf, seed, target)
    except OracleError as exc:
        finding.write_error = str(exc)


def _write_files(tmp: Path, finding: Finding, libbpf: LibbpfInfo, seed: int | None,
                 target: Target | None) -> None:
    outcome = finding.outcome
    header = TraceHeader(libbpf=libbpf, origin="shrink", seed=seed, note=finding.signature)
    answered = [r.answer for r in outcome.actual]
    records = [
        Record(op, answered[i] if i < len(answered) else None,
               tuple(line.text for line in outcome.actual[i].log) if i < len(answered) else ())
        for i, op in enumerate(outcome.ops)
    ]
    write_trace(tmp / "trace.jsonl", header, records)
    expected = Trace(header, tuple(Record(op, a) for op, a in zip(outcome.ops, outcome.expected,
                                                                    strict=True)))
    repro = emit_c(expected, title=finding.signature, summary=finding.summary)
    (tmp / "repro.c").write_text(repro)
    if not finding.repro_runs:
        finding.repro_runs = [run_repro(tmp / "repro.c", libbpf)]
        plain = plain_twin_info(libbpf, target)
        if plain is not None:
            finding.repro_runs.append(run_repro(tmp / "repro.c", plain))
    (tmp / "repro.c").write_text(repro_header(finding.repro_runs) + repro)
    (tmp / "selftest.c").write_text(emit_selftest(
        expected, name=selftest_name(slug(finding.signature)), title=finding.signature,
        summary=finding.summary))
    (tmp / "summary.md").write_text(summary_markdown(finding, libbpf))
    data = finding.as_report() | {
        "trace": "trace.jsonl", "reproducer": "repro.c",
        "libbpf": {"version": libbpf.version, "variant": libbpf.variant,
                   "path": libbpf.path, "so_sha256": libbpf.so_sha256},
        "seed": seed,
    }
    (tmp / "finding.json").write_text(json.dumps(data, indent=2) + "\n")
