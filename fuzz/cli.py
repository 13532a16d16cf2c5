"""``sec-oracle fuzz``: a libFuzzer run of one harness, triaged into ``check``'s findings,
report and exit statuses.

    sec-oracle fuzz HARNESS [--libbpf TARGET] [--time S] [--jobs N] [--corpus DIR]
        [--findings DIR] [--artifacts DIR] [--report FILE] [--junit FILE] [-- LIBFUZZER_ARGS]

Rules:
- ``HARNESS`` is one of ``HARNESSES``: ``registry`` (registrations and lookups)
  or ``lifecycle`` (also objects: open, set_type, load, attach, close), both
  ``fuzz/harness_registry.py`` run as a script (libFuzzer relaunches it
  through ``argv[0]`` for ``-fork``).
- The working corpus (``--corpus``, default ``fuzz-corpus/HARNESS``) lives
  outside git; the committed seeds (``corpus/fuzz/registry/``), the
  harness's regression seeds (``corpus/fuzz-regressions/HARNESS/``, written by
  ``sec-oracle corpus add``) and dictionary are added to it at the start
  (existing files are never touched).  Crash artifacts go to ``--artifacts``
  (default ``fuzz-artifacts/HARNESS``).
- libFuzzer always runs in fork mode (``-fork=JOBS``, crashes, timeouts and
  OOMs ignored), so one crash does not end a CI job's fuzzing: every
  artifact of the run is triaged afterwards (``fuzz.triage``: re-run on the
  crash-isolated worker, deduplicated, shrunk, classified) into the same
  findings, report (with ``harness``, libFuzzer's last ``stats`` and a
  ``progress`` timeline) and exit statuses as ``check``.
- Progress: libFuzzer's status lines (``#N cov: ft: corp: exec/s``) become
  one line, live on a terminal, a plain line every 10 s elsewhere.
- A stop request (SIGINT/SIGTERM: ``oracle.stop``) is passed to libFuzzer as
  SIGINT (it exits cleanly); what it saved is still triaged and the report
  says ``interrupted``.
- Bad input is one line, exit 2, before libFuzzer starts (``check_target``,
  ``check_corpus``): a target that is not a fuzz build (plain, asan, cov: no
  SanitizerCoverage counters; it names the ``+fuzz`` target to build) unless
  ``--python-only`` (the harness then atheris-instruments our Python modules:
  Python coverage only); a corpus directory that cannot be read; a corpus
  file that does not decode (``fuzz.decode``) to at least one op the harness
  would run (``fuzz.checks.admissible`` for this target and ``--allow-known``)
  -- except files libFuzzer wrote itself (named by the SHA-1 of their bytes),
  which it kept for their coverage.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fuzz import checks
from oracle import stop
from oracle.argtypes import positive_float, positive_int
from oracle.campaign.check import CheckConfig, JobStats, exit_status, prepare
from oracle.campaign.cli import Console, check_report_paths, write_reports
from oracle.campaign.report import report_data
from oracle.errors import OracleError
from oracle.shipped import FUZZ_SEEDS, REGRESSION_SEEDS

ROOT: Final = Path(__file__).resolve().parents[1]
HARNESS_SCRIPT: Final = Path(__file__).resolve().with_name("harness_registry.py")
#: harness name -> the harness's own flags
HARNESSES: Final = {"registry": (), "lifecycle": ("--lifecycle",)}
SEEDS: Final = FUZZ_SEEDS / "registry"
DICTIONARY: Final = FUZZ_SEEDS / "registry.dict"
ARTIFACT_PREFIXES: Final = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")
#: a libFuzzer status line, plain (``#1024\tNEW cov: ...``) or fork mode (``#1306: cov: ...``)
STATUS: Final = re.compile(
    r"^#(?P<execs>\d+):?\s+(?:\w+\s+)?cov: (?P<cov>\d+) ft: (?P<ft>\d+) corp: (?P<corp>\d+)"
    r".*?exec/s:? (?P<rate>\d+)")


@dataclass
class FuzzProgress:
    """What libFuzzer said last, and when (``progress`` in the report)."""

    started: float = field(default_factory=time.monotonic)
    execs: int = 0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    rate: int = 0
    timeline: list[dict[str, float]] = field(default_factory=list)

    def update(self, line: str) -> bool:
        match = STATUS.match(line)
        if match is None:
            return False
        self.execs, self.cov, self.ft, self.corpus, self.rate = (
            int(match[name]) for name in ("execs", "cov", "ft", "corp", "rate"))
        self.timeline.append({"seconds": round(time.monotonic() - self.started, 1),
                              "execs": self.execs, "cov": self.cov, "ft": self.ft,
                              "corpus": self.corpus, "exec_per_s": self.rate})
        return True

    def text(self) -> str:
        return (f"fuzz: {self.execs} execs, cov {self.cov}, ft {self.ft}, corpus {self.corpus},"
                f" {self.rate} exec/s")


def seed_corpus(corpus: Path, harness: str = "registry") -> int:
    """Add the committed seeds, and the harness's regression seeds, to the working corpus
    (never overwriting a file)."""
    corpus.mkdir(parents=True, exist_ok=True)
    added = 0
    regressions = REGRESSION_SEEDS / harness
    extra = sorted(regressions.iterdir()) if regressions.is_dir() else []
    for seed in [*sorted(SEEDS.iterdir()), *extra]:
        target = corpus / seed.name
        if not target.exists():
            shutil.copyfile(seed, target)
            added += 1
    return added


def not_fuzz_build(label: str, variant: str, build_hint: str) -> OracleError:
    article = "an" if variant[0] in "aeiou" else "a"
    return OracleError(f"libbpf {label} is {article} {variant} build: fuzz needs VERSION+fuzz or"
                       f" DIR+fuzz (sec-oracle libbpf build {build_hint}), or --python-only"
                       " for Python coverage only")


def check_target(spec: str, python_only: bool) -> None:
    """Refuse a release or tree target that is not a fuzz build, before it is built."""
    from oracle.libbpf.targets import parse_target

    kind, version, variant, path = parse_target(spec)  # a bad spelling: prepare says it
    if python_only or variant == "fuzz" or kind not in ("release", "tree"):
        return
    stem = version if kind == "release" else str(path)
    raise not_fuzz_build(spec, variant, f"{stem}+fuzz")


def check_corpus(corpus: Path, lifecycle: bool, policy: checks.Policy) -> None:
    """Every file of an existing corpus is input the harness runs (module rules)."""
    from fuzz.decode import decode

    if not corpus.exists():
        return
    try:
        files = sorted(p for p in corpus.rglob("*") if not p.is_dir())
        for file in files:
            data = file.read_bytes()
            if file.name == hashlib.sha1(data).hexdigest():
                continue  # libFuzzer's own
            try:
                ops = checks.admissible(decode(data, lifecycle=lifecycle), policy)
            except Exception as exc:  # any failure is bad input
                raise OracleError(f"corpus file {file} does not decode: {exc!r}") from None
            if not ops:
                raise OracleError(f"corpus file {file} is not fuzz input: it decodes to no op"
                                  " the harness would run (fuzz.decode, fuzz.checks.admissible)")
    except OSError as exc:
        raise OracleError(f"cannot read the fuzz corpus {corpus}:"
                          f" {exc.strerror or exc}") from None


def libfuzzer_argv(args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    return [sys.executable, str(HARNESS_SCRIPT), f"--libbpf={args.libbpf}",
            *HARNESSES[args.harness], *["--allow-known"] * args.allow_known,
            *["--instrument=yes"] * args.python_only,
            f"-dict={DICTIONARY}",
            f"-max_total_time={int(args.time)}", f"-fork={args.jobs}", "-ignore_crashes=1",
            "-ignore_timeouts=1", "-ignore_ooms=1",
            f"-artifact_prefix={args.artifacts.resolve()}/", *extra,
            str(args.corpus.resolve())]


def run_libfuzzer(argv: list[str], log: Path, progress: FuzzProgress,
                  show: Any) -> int:
    """Run libFuzzer, its output to ``log``, its status lines to ``progress``; a stop
    request is passed on as SIGINT."""
    with open(log, "w", encoding="utf-8", errors="replace") as sink:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
        assert proc.stdout is not None
        passed_on = False
        for line in proc.stdout:
            sink.write(line)
            if progress.update(line):
                show(progress)
            if stop.requested() is not None and not passed_on:
                passed_on = True
                os.killpg(proc.pid, signal.SIGINT)
        if stop.requested() is not None and not passed_on:
            os.killpg(proc.pid, signal.SIGINT)
        return proc.wait()


def artifacts_of(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(ARTIFACT_PREFIXES))


def run(args: argparse.Namespace) -> int:
    from fuzz.triage import triage

    check_report_paths(args)
    extra = [a for a in args.libfuzzer if a != "--"]
    config = CheckConfig(libbpf=args.libbpf, seconds=args.time, jobs=args.jobs,
                         findings=args.findings)
    check_target(args.libbpf, args.python_only)
    env = prepare(config)  # bad target: one line, exit 2, before anything runs
    if env.target.variant != "fuzz" and not args.python_only:
        raise not_fuzz_build(args.libbpf if env.target.kind == "path" else
                             f"{args.libbpf} ({env.version})", env.target.variant,
                             f"{env.version}+fuzz")
    check_corpus(args.corpus, args.harness == "lifecycle",
                 checks.policy(env.version, env.target.variant, allow_known=args.allow_known))
    try:
        args.artifacts.mkdir(parents=True, exist_ok=True)
        added = seed_corpus(args.corpus, args.harness)
    except OSError as exc:
        raise OracleError(f"cannot set up the fuzz corpus: {exc}") from None
    before = set(artifacts_of(args.artifacts))
    console = Console()
    console.print(f"fuzz: {args.harness} harness on libbpf {env.version} ({env.info.variant})"
                  f" at {env.target.path}; corpus {args.corpus} (+{added} seeds)")
    from oracle.campaign.check import ProgressLine

    line = ProgressLine(sys.stderr)
    progress = FuzzProgress()
    log = args.artifacts / "libfuzzer.log"

    started = time.monotonic()
    with stop.handling_signals():
        status = run_libfuzzer(libfuzzer_argv(args, extra), log, progress,
                               lambda p: line.show(p.text()))
        interrupted = stop.requested()
        line.done()
        found = [p for p in artifacts_of(args.artifacts) if p not in before]
        rows = triage(found, libbpf=args.libbpf, findings=args.findings,
                      lifecycle=args.harness == "lifecycle",
                      allow_known=args.allow_known) if found else []
    stats = JobStats(cases=progress.execs, seconds=time.monotonic() - started,
                     interrupted=interrupted)
    for row in rows:
        if row.finding is not None and row.result in ("new", "known"):
            stats.findings[row.finding.signature] = row.finding
    if status not in (0, -signal.SIGINT, 130) and not found and interrupted is None:
        stats.errors.append(f"libFuzzer exited with status {status} and saved nothing:"
                            f" see {log}")
    data = report_data(env, config, stats)
    data["harness"] = args.harness
    data["libfuzzer"] = {"status": status, "log": str(log), "artifacts": [str(p) for p in found],
                         "stats": progress.timeline[-1] if progress.timeline else None}
    data["progress"] = progress.timeline
    data["triage"] = [{"file": r.file, "result": r.result, "signature": r.signature or None}
                      for r in rows]
    write_reports(args, data)
    console.print(progress.text() + f", {len(found)} artifact(s)")
    for row in rows:
        console.print(f"  [{row.result}{' ' + row.known if row.known else ''}] {row.file}"
                      f" {row.signature}  {row.directory}")
    code = exit_status(stats, strict=False)
    console.print("no findings" if not stats.findings else
                  "findings: see above" if code == 1 else "findings: all known")
    if interrupted is not None:
        console.print(f"interrupted by {interrupted}: the report covers the run so far")
    return code


def register(sub: Any) -> None:
    parser = sub.add_parser("fuzz", help="a libFuzzer run of one harness, triaged like check")
    parser.add_argument("harness", choices=sorted(HARNESSES), metavar="HARNESS",
                        help=f"one of {', '.join(sorted(HARNESSES))}")
    parser.add_argument("--libbpf", default="1.7.0+fuzz", metavar="TARGET",
                        help="a fuzz build: VERSION+fuzz or DIR+fuzz (default 1.7.0+fuzz)")
    parser.add_argument("--python-only", action="store_true",
                        help="allow a target that is not a fuzz build (Python coverage only)")
    parser.add_argument("--time", type=positive_float, default=60.0, metavar="S")
    parser.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                        help="libFuzzer -fork=N")
    parser.add_argument("--corpus", type=Path, default=None, metavar="DIR",
                        help="the working corpus (default fuzz-corpus/HARNESS)")
    parser.add_argument("--artifacts", type=Path, default=None, metavar="DIR",
                        help="crash artifacts and libFuzzer's log (default fuzz-artifacts/HARNESS)")
    parser.add_argument("--findings", type=Path, default=Path("findings"), metavar="DIR")
    parser.add_argument("--report", type=Path, default=None, metavar="FILE")
    parser.add_argument("--junit", type=Path, default=None, metavar="FILE")
    parser.add_argument("--allow-known", action="store_true",
                        help="do not steer around documented bugs that crash sanitizer builds")
    parser.add_argument("libfuzzer", nargs="*", metavar="LIBFUZZER_ARG",
                        help="after --: passed to libFuzzer (e.g. -- -max_len=512)")
    parser.set_defaults(handler=_run_with_defaults)


def _run_with_defaults(args: argparse.Namespace) -> int:
    args.corpus = args.corpus or Path("fuzz-corpus") / args.harness
    args.artifacts = args.artifacts or Path("fuzz-artifacts") / args.harness
    for path in (args.corpus, args.artifacts):
        if path.exists() and not path.is_dir():
            raise OracleError(f"{path} is not a directory")
    return run(args)
