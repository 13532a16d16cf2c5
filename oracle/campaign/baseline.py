"""``check --baseline B``: what a patch changed: the same cases on two builds, by the model.

Rules:
- A is the build under test (``--libbpf``: master with a patch, a new release),
  B the baseline (``--baseline``: master, the previous release).  Both are
  prepared like any target (``environment.prepare``); cases are generated once,
  from A's profile, and each runs on a fresh state of A and of B
  (``Worker.run_fresh``), so a case's answers replay on their own.
- A *difference* is the first op whose answers differ between A and B (over
  the ops both answered), or a crash on one side only: ``baseline:<op>:<field>:
  <B's class>-><A's class>`` (``compare.Divergence`` with B as expected), or
  ``baseline:crash:<A|B>:<signature>``.  Differences deduplicate by signature.
- The verdict of a difference is the model's (A's profile: the tree under
  test defines its own table): ``A agrees with the model`` (the patch moved
  towards the model), ``B agrees with the model`` (it moved away), or
  ``neither``.  For a crash, the side that did not crash is the one judged.
- A new difference is shrunk (``shrink.shrink``: candidates must keep the same
  signature) and written like a ``check`` finding (``findings.keep_finding``):
  ``trace.jsonl`` holds A's answers, ``repro.c``/``selftest.c`` check the
  model's answers, so a reproducer of a regression passes on B and fails on A.
- A case with a known bug's cause (``known.KnownBug.triggered``) is judged
  also by the model with that bug's fix (a patch that fixes KB1 agrees with
  the model); where the bug has no fix to model (KB3: stale pointers), a
  difference that would move away is labelled ``not judged`` instead.
- Exit status: 1 when a difference moves away from the model (``B agrees`` or
  ``neither``), else 0; 2 for bad input.  Differences where A agrees are reported
  and do not fail the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from oracle import stop
from oracle.campaign.check import CheckConfig, MixedCases, check_writable_dir
from oracle.campaign.compare import first_divergence, show
from oracle.campaign.findings import Finding, keep_finding
from oracle.campaign.known import known_bugs
from oracle.campaign.runner import CaseOutcome, crash_signature
from oracle.campaign.shrink import shrink
from oracle.environment import Environment, prepare
from oracle.libbpf.worker import BatchResult, Worker
from oracle.model.objects import NotModelledError
from oracle.model.oracle import Oracle
from oracle.model.versions import with_fixes
from oracle.ops import OP_NAMES, Answer, Op

A_AGREES: Final = "A agrees with the model"
B_AGREES: Final = "B agrees with the model"
NEITHER: Final = "neither agrees with the model"
#: a case with the cause of a known bug whose answers are not deterministic (KB3)
KNOWN: Final = "not judged: the case has the cause of known bug"
#: verdicts that fail the run: the change moved away from the model
AWAY: Final = frozenset({B_AGREES, NEITHER})


@dataclass(frozen=True)
class Difference:
    """What differs between A and B on one case (module rules)."""

    signature: str
    index: int  # the op where they part
    verdict: str
    summary: str


@dataclass
class BaselineStats:
    cases: int = 0
    ops: int = 0
    seconds: float = 0.0
    findings: dict[str, Finding] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)  # signature -> verdict


def answers(batch: BatchResult) -> list[Answer]:
    return [r.answer for r in batch.results]


def difference(ops: list[Op], expected: list[Answer], a: BatchResult, b: BatchResult,
               fixed: Sequence[list[Answer]] = ()) -> Difference | None:
    """The first difference between A's and B's answers, judged by ``expected`` (A's
    model) or any of ``fixed`` (the model with a known bug's fix, for a case with its
    cause: a patch that fixes the bug agrees with the model)."""
    got_a, got_b = answers(a), answers(b)
    split = first_divergence(ops, got_b, got_a)
    if split is not None:
        i = split.index
        models = [expected, *fixed]
        a_ok = any(got_a[i] == m[i] for m in models)
        b_ok = any(got_b[i] == m[i] for m in models)
        verdict = A_AGREES if a_ok else B_AGREES if b_ok else NEITHER
        return Difference(split.signature.replace("divergence:", "baseline:", 1), i, verdict,
                          f"op {i} {OP_NAMES[type(ops[i])]}: B (baseline) gave"
                          f" {show(got_b[i], ops[i])}, A gave {show(got_a[i], ops[i])};"
                          f" the model expects {show(expected[i], ops[i])}")
    if (a.crash is None) == (b.crash is None):
        return None  # same answers; both ran through, or both died (a known-style crash)
    crashed, other, side = (a, b, "A") if a.crash is not None else (b, a, "B")
    assert crashed.crash is not None
    ran = answers(other)
    other_ok = ran == expected[: len(ran)]
    verdict = (A_AGREES if side == "B" else B_AGREES) if other_ok else NEITHER
    return Difference(f"baseline:crash:{side}:{crash_signature(crashed.crash)}",
                      crashed.crash.op_index, verdict,
                      f"{side} {crashed.crash.kind}s on op {crashed.crash.op_index}"
                      f" ({crash_signature(crashed.crash)}); the other build does not")


class Pair:
    """One case on fresh states of A and B, and the model of A."""

    def __init__(self, env: Environment, a: Worker, b: Worker) -> None:
        self.env, self.a, self.b = env, a, b

    def run(self, ops: list[Op]) -> tuple[Difference | None, list[Answer], BatchResult]:
        model = self.env.profile
        expected = Oracle(model, bpf=self.env.bpf).run(ops)
        on_a, on_b = self.a.run_fresh(tuple(ops)), self.b.run_fresh(tuple(ops))
        bugs = [bug for bug in known_bugs() if bug.triggered(model.version, ops)]
        fixed = [Oracle(with_fixes(model, dict(bug.fix)), bpf=self.env.bpf).run(ops)
                 for bug in bugs if bug.fix]
        found = difference(ops, expected, on_a, on_b, fixed)
        undetermined = [bug.id for bug in bugs if not bug.fix]
        if found is not None and found.verdict in AWAY and undetermined:
            # a documented bug's cause is in the case: its answers are not deterministic
            found = dataclasses.replace(found, verdict=f"{KNOWN} {', '.join(undetermined)}")
        return found, expected, on_a

    def signature(self, ops: list[Op]) -> str | None:
        """The shrinker's predicate (None for what the model cannot answer)."""
        try:
            found, _, _ = self.run(ops)
        except NotModelledError:
            return None
        return found.signature if found is not None else None


def new_finding(pair: Pair, config: CheckConfig, seed: int, ops: list[Op],
                found: Difference) -> tuple[Finding, str]:
    """Shrink, re-run and write one new difference; its finding and verdict."""
    minimal = shrink(ops, found.signature, pair.signature, max_tries=config.shrink_tries,
                     max_seconds=config.shrink_seconds)
    again, expected, on_a = pair.run(minimal)
    confirmed = again is not None and again.signature == found.signature
    final = again if again is not None and confirmed else found
    if not confirmed:
        minimal = ops
        _, expected, on_a = pair.run(minimal)
    outcome = CaseOutcome(tuple(minimal), tuple(expected), on_a.results, None, None,
                          confirmed=confirmed)
    finding = Finding(final.signature, "baseline", f"{final.verdict}: {final.summary}",
                      outcome, seeds=[seed])
    keep_finding(config.findings, finding, pair.env.info, seed)
    return finding, final.verdict


def run_baseline(config: CheckConfig, baseline: str, baseline_source: Path | None = None,
                 progress: Callable[[BaselineStats], None] | None = None,
                 announce: Callable[[Environment, Environment], None] | None = None,
                 ) -> tuple[Environment, Environment, BaselineStats]:
    """The campaign of the module rules; every failure before it starts is an ``OracleError``."""
    env = prepare(config.libbpf, config.source)
    base = prepare(baseline, baseline_source)
    check_writable_dir(config.findings, "findings directory")
    if announce is not None:
        announce(env, base)
    stats = BaselineStats()
    seed = config.seed
    cases = MixedCases(env, config, seed)
    rng = random.Random(seed)
    start = time.monotonic()
    deadline = start + config.seconds if config.seconds is not None else None
    with Worker(env.target, timeout=config.timeout, log=False) as on_a, \
            Worker(base.target, timeout=config.timeout, log=False) as on_b:
        pair = Pair(env, on_a, on_b)
        while (config.cases is None or stats.cases < config.cases) and (
                deadline is None or time.monotonic() < deadline) and stop.requested() is None:
            ops = cases.next(fresh=rng.random() < 0.5)
            with contextlib.suppress(NotModelledError):
                found, _, _ = pair.run(ops)
                stats.cases += 1
                stats.ops += len(ops)
                if found is not None:
                    _count(stats, pair, config, seed, ops, found)
            stats.seconds = time.monotonic() - start
            if progress is not None:
                progress(stats)
    stats.seconds = time.monotonic() - start
    return env, base, stats


def _count(stats: BaselineStats, pair: Pair, config: CheckConfig, seed: int, ops: list[Op],
           found: Difference) -> None:
    if found.signature in stats.findings:
        stats.findings[found.signature].count += 1
        return
    finding, verdict = new_finding(pair, config, seed, ops, found)
    stats.findings[found.signature] = finding
    stats.verdicts[found.signature] = verdict


def exit_status(stats: BaselineStats) -> int:
    """1 when a confirmed difference moved away from the model (module rules)."""
    return int(any(stats.verdicts[s] in AWAY and f.outcome.confirmed
                   for s, f in stats.findings.items()))


__all__ = [
    "AWAY",
    "A_AGREES",
    "B_AGREES",
    "NEITHER",
    "BaselineStats",
    "Difference",
    "exit_status",
    "run_baseline",
]
