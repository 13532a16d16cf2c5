"""``sec-oracle record``: run generated cases on a libbpf and save them as traces with its answers.

Rules:
- Each case runs on a fresh libbpf process state (``Worker.run_fresh``) and is
  saved as one trace: header (origin ``record``, target, sha256, seed), then
  every op with libbpf's answer and log lines.
- Cases whose outcome depends on memory corruption are never saved: crashes,
  and cases that trigger a documented libbpf bug (``campaign.known.TRIGGERS``
  of the entries for this release), since their answers are not reproducible.
  Nor are cases the model cannot answer (``NotModelledError``: e.g. loading
  0.8.x legacy maps), which a replay could never check.
- ``select="coverage"`` keeps a case only if it makes the oracle execute model
  code paths no kept case executed before (greedy, branch coverage of
  ``oracle/model``): a small corpus that reaches every rule.  ``select="all"``
  keeps every recordable case.
- Trace files are named ``<seed>-<case>.jsonl`` and written atomically; an
  existing corpus directory gets new files beside the old ones.
- The output directory is checked (created, writable) before the target is
  prepared; a trace that cannot be written (a full disk) stops the run with
  one line naming it and how many traces were saved before it, which stay.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oracle.campaign.check import CheckConfig, MixedCases, check_writable_dir, prepare
from oracle.campaign.known import triggers_known_bug
from oracle.environment import Environment
from oracle.errors import OracleError
from oracle.libbpf.worker import Worker
from oracle.model.objects import NotModelledError
from oracle.model.oracle import Oracle
from oracle.model.versions import Profile
from oracle.ops import Op
from oracle.traces import Record, TraceHeader, write_trace

MODEL_DIR = Path(__file__).resolve().parent / "model"


@dataclass(frozen=True)
class RecordStats:
    cases: int
    kept: int
    skipped_crash: int
    skipped_known: int
    paths: tuple[Path, ...]
    skipped_unmodelled: int = 0


class ModelCoverage:
    """Which branches (arcs) of ``oracle/model`` a case makes the oracle take."""

    def __init__(self, model: str | Profile, bpf: bool) -> None:
        import coverage

        self.model = model
        self.bpf = bpf
        self.seen: set[tuple[str, int, int]] = set()
        self._cov = coverage.Coverage(data_file=None, branch=True,
                                      include=[str(MODEL_DIR / "*.py")],
                                      omit=[str(MODEL_DIR / "reference.py")])

    def arcs(self, ops: list[Op]) -> set[tuple[str, int, int]]:
        self._cov.erase()
        self._cov.start()
        try:
            Oracle(self.model, bpf=self.bpf).run(ops)
        finally:
            self._cov.stop()
        data = self._cov.get_data()
        return {(f, a, b) for f in data.measured_files() for a, b in (data.arcs(f) or ())}

    def adds(self, ops: list[Op]) -> bool:
        new = self.arcs(ops) - self.seen
        self.seen |= new
        return bool(new)


def record(env: Environment, out: Path, *, count: int, seed: int, select: str,
           timeout: float = 10.0) -> RecordStats:
    """Run ``count`` generated cases on ``env``'s libbpf and save the chosen ones."""
    check_writable_dir(out, "output directory")
    coverage = ModelCoverage(env.profile, env.bpf) if select == "coverage" else None
    kept: list[Path] = []
    total = crashed = known = unmodelled = 0
    mixed = MixedCases(env, CheckConfig(lifecycle=0.5), seed)
    with Worker(env.target, timeout=timeout) as worker:
        for index in range(count):
            ops = mixed.next()
            total += 1
            if triggers_known_bug(env.version, ops):
                known += 1
                continue
            try:
                if coverage is None:
                    Oracle(env.profile, bpf=env.bpf).run(ops)
                elif not coverage.adds(ops):
                    continue
            except NotModelledError:
                unmodelled += 1
                continue
            batch = worker.run_fresh(ops)
            if batch.crash is not None:
                crashed += 1
                continue
            header = TraceHeader(libbpf=env.info, origin="record", seed=seed,
                                 note=f"case {index} of seed {seed}")
            records = [Record(op, r.answer, tuple(line.text for line in r.log))
                       for op, r in zip(ops, batch.results, strict=True)]
            path = out / f"{seed}-{index:05d}.jsonl"
            try:
                kept.append(write_trace(path, header, records))
            except OSError as exc:
                raise OracleError(f"cannot write trace {path}: {exc.strerror or exc}"
                                  f" ({len(kept)} traces saved before it stay)") from None
    return RecordStats(total, len(kept), crashed, known, tuple(kept), unmodelled)


def _run(args: argparse.Namespace) -> int:
    check_writable_dir(args.out, "output directory")
    env = prepare(CheckConfig(libbpf=args.libbpf, source=args.source))
    stats = record(env, args.out, count=args.cases, seed=args.seed, select=args.select)
    print(f"record: {stats.cases} cases on libbpf {env.version} ({env.info.variant}):"
          f" {stats.kept} saved under {args.out}, {stats.skipped_crash} crashed,"
          f" {stats.skipped_known} touch a known libbpf bug,"
          f" {stats.skipped_unmodelled} not modelled")
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("record", help="save generated cases with libbpf's answers as traces")
    parser.add_argument("--libbpf", default="system", metavar="TARGET")
    parser.add_argument("--source", type=Path, default=None, metavar="DIR",
                        help="the libbpf tree a PATH .so was built from (its table)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--select", choices=["coverage", "all"], default="coverage")
    parser.set_defaults(handler=_run)
