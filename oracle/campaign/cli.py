"""``sec-oracle check``: parse, run the campaign, print, write the reports."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from oracle import stop
from oracle.argtypes import positive_float, positive_int
from oracle.campaign import baseline
from oracle.campaign.check import CheckConfig, JobStats, ProgressLine, exit_status, run_check
from oracle.campaign.report import junit_xml, report_data, write_json
from oracle.environment import Environment
from oracle.errors import OracleError
from oracle.outputs import atomic_write, check_distinct, check_output_file


class Console:
    """stdout for the run's text, which a closed pipe or a full device cannot break: a
    failed write turns stdout off for the rest of the run (the report still has
    everything, and the exit status is the run's, never that of the write)."""

    def __init__(self) -> None:
        self.alive = True

    def print(self, text: str) -> None:
        if not self.alive:
            return
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except OSError:  # BrokenPipeError, ENOSPC on /dev/full, ...
            self.alive = False
            with contextlib.suppress(OSError):  # nor may the exit's flush fail
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())


def write_reports(args: argparse.Namespace, data: dict[str, Any]) -> None:
    """The JSON report and JUnit, first of all output: nothing after them can lose them."""
    if args.report is not None:
        write_json(args.report, data)
    if args.junit is not None:
        atomic_write(args.junit, junit_xml(data))


def check_report_paths(args: argparse.Namespace) -> None:
    """``--report`` and ``--junit``, refused before any work when they could not be
    written safely (``oracle.outputs``)."""
    for what, path in (("report", args.report), ("JUnit report", args.junit)):
        if path is not None:
            check_output_file(path, what)
    check_distinct({"--report": args.report, "--junit": args.junit})


def run(args: argparse.Namespace) -> int:
    check_report_paths(args)
    config = CheckConfig(
        libbpf=args.libbpf,
        source=args.source,
        seconds=None if args.cases is not None and args.time is None else (args.time or 60.0),
        cases=args.cases,
        seed=args.seed,
        jobs=args.jobs,
        findings=args.findings,
        strict=args.strict,
    )
    console = Console()
    with stop.handling_signals():
        if args.baseline is not None:
            return run_baseline_cli(args, config, console)
        progress = ProgressLine(sys.stderr)
        env, stats = run_check(config, progress,
                               announce=lambda env: console.print(describe(env)))
    data = report_data(env, config, stats)
    write_reports(args, data)
    progress.done()
    console.print(progress.text(stats))
    for finding in stats.findings.values():
        label = f"known {finding.known.id}" if finding.known else "NEW"
        if not finding.outcome.confirmed:
            label = "unconfirmed: not reproduced on a fresh state"
        console.print(f"  [{label}] {finding.signature} x{finding.count}: {finding.summary}")
        console.print(f"      {finding.directory or 'not written: ' + str(finding.write_error)}")
    for bug_id, count in sorted(stats.fixed.items()):
        console.print(f"  [fixed {bug_id}] this build answers as {bug_id}'s fix does"
                      f" ({count} cases with its cause; the model took the fix)")
    for error in stats.errors:
        console.print(f"  [error] {error}")
    status = exit_status(stats, config.strict)
    unconfirmed = any(not f.outcome.confirmed for f in stats.findings.values())
    console.print("conforms" if not stats.findings else "findings: see above" if status == 1
                  else "findings: known or unconfirmed only" if unconfirmed
                  else "findings: all known")
    if stats.interrupted is not None:
        console.print(f"interrupted by {stats.interrupted}: the report covers the run so far")
    return status


def run_baseline_cli(args: argparse.Namespace, config: CheckConfig, console: Console) -> int:
    """``check --libbpf A --baseline B``: differences between two builds, judged."""
    if args.jobs != 1:
        raise OracleError("--baseline runs one job: leave out --jobs")
    progress = ProgressLine(sys.stderr)
    env, base, stats = baseline.run_baseline(
        config, args.baseline, args.baseline_source, progress,
        announce=lambda a, b: console.print(f"A: {describe(a)}\nB: {describe(b)}"))
    interrupted = stop.requested()
    status = stop.exit_status(interrupted) if interrupted else baseline.exit_status(stats)
    data = baseline_report(env, base, config, stats, status)
    data["interrupted"] = interrupted
    write_reports(args, data)
    progress.done()
    console.print(progress.text(stats).replace("check:", "baseline:", 1))
    for signature, finding in stats.findings.items():
        verdict = stats.verdicts[signature]
        label = ("moves away" if verdict in baseline.AWAY else "known bug's cause"
                 if verdict.startswith(baseline.KNOWN) else "towards the model")
        if not finding.outcome.confirmed:
            label = "unconfirmed: not reproduced on a fresh state"
        console.print(f"  [{label}] {signature} x{finding.count}: {finding.summary}")
        console.print(f"      {finding.directory or 'not written: ' + str(finding.write_error)}")
    console.print("no differences" if not stats.findings else
                  ("differences: none moves away from the model" if status == 0
                   else "differences: see above"))
    if interrupted is not None:
        console.print(f"interrupted by {interrupted}: the report covers the run so far")
    return status


def baseline_report(env: Environment, base: Environment, config: CheckConfig,
                    stats: baseline.BaselineStats, status: int) -> dict[str, Any]:
    """The report of a baseline run: ``check``'s report of A, plus B and each verdict."""
    jobs = JobStats(cases=stats.cases, ops=stats.ops, seconds=stats.seconds,
                    findings=stats.findings)
    data = report_data(env, config, jobs)
    data["baseline"] = report_data(base, config, JobStats())["libbpf"]
    for item, signature in zip(data["findings"], stats.findings, strict=True):
        item["verdict"] = stats.verdicts[signature]
        item["fails"] = stats.verdicts[signature] in baseline.AWAY  # JUnit: a failure
    data["exit_status"] = status
    data["unexplained"] = sum(1 for v in stats.verdicts.values() if v in baseline.AWAY)
    return data


def describe(env: Environment) -> str:
    """One line: what is tested, against which table, and how its profile is known."""
    return (f"check: libbpf {env.version} ({env.info.variant}) at {env.target.path}; "
            f"table: {env.profile.table.origin}; profile: {env.profile.status}")


def register(sub: Any) -> None:
    parser = sub.add_parser("check", help="a differential campaign: oracle vs real libbpf")
    parser.add_argument("--libbpf", default="system", metavar="TARGET",
                        help="system | VERSION[+asan|+fuzz] | DIR[+asan|+fuzz] (a libbpf"
                        " source tree) | PATH (a libbpf .so)")
    parser.add_argument("--source", type=Path, default=None, metavar="DIR",
                        help="the libbpf tree a PATH .so was built from (its table)")
    parser.add_argument("--baseline", default=None, metavar="TARGET",
                        help="run the same cases on this build too and report every answer"
                        " that differs, judged by the model (exit 1 if one moves away)")
    parser.add_argument("--baseline-source", type=Path, default=None, metavar="DIR",
                        help="the libbpf tree the --baseline .so was built from")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--time", type=positive_float, default=None, metavar="S",
                        help="seconds to run (default 60)")
    budget.add_argument("--cases", type=positive_int, default=None, metavar="N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=positive_int, default=1)
    parser.add_argument("--report", type=Path, default=None, metavar="FILE",
                        help="write the JSON report here")
    parser.add_argument("--junit", type=Path, default=None, metavar="FILE",
                        help="write JUnit XML here")
    parser.add_argument("--findings", type=Path, default=Path("findings"), metavar="DIR")
    parser.add_argument("--strict", action="store_true",
                        help="known libbpf bugs fail the run too")
    parser.set_defaults(handler=run)
