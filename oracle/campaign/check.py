"""``sec-oracle check``: the differential campaign — generate, compare, shrink, confirm, report.

Rules:
- Environment first, campaign second: the target is resolved and probed, its
  release's table chosen, and the report and findings paths checked writable
  before the first case runs, so bad input costs nothing and exits 2.
- Cases run in chains (``runner.Chain``: batches of cases back to back in one
  worker process, each followed by cleanup ops) for throughput, plus one case
  every ``fresh_every`` batches on a fresh libbpf process state
  (``Worker.run_fresh``) for the paths only an untouched process has.  The
  first divergence or crash ends a chain; a failing chained case is first
  retried alone on a fresh state.
- A new signature is shrunk (``Differential.minimise``: candidates accepted only
  on the same signature and only if they bring in no documented bug's cause the
  case lacked), confirmed on a fresh libbpf state, classified against the
  known-bug list, and written at once (``findings.keep_finding``); every
  repro.c is compiled and run against the build first.  After the campaign,
  each confirmed crash of a plain build is run again on its ASan twin (built
  if needed: it may take a minute) and its finding's files amended
  (``oracle.campaign.confirm``).
  A signature seen again only counts; once written, a chain runs past its
  repeats where both sides' state is unchanged (``runner.leaves_state_alone``),
  counting them, instead of ending (and restarting) on each (a chain that ran
  past a register whose ids differ restarts after that batch: the registries
  drift apart from there).  Once a known bug
  is found, chained cases steer around its trigger where they can
  (``MixedCases.avoid``), unless ``strict``.
- A known bug's cause stays in fresh cases after it is found (and KB3's,
  the registry changing under open objects, has a fresh case of its own every
  ``cause_every`` batches); the report counts those cases and how many
  conformed (``known_bug_causes``).  A failure that
  the model with that bug's ``fix`` answers exactly means this build fixed it:
  no finding, the job's model takes the fix, and the report lists the bug as
  fixed.
- Exit status (``exit_status``): 0 when every finding is known (or none), 1
  when a confirmed one is not (or, with ``strict``, any confirmed one), 2 for
  bad usage or environment (also a job that died or a finding that could not
  be written: the report says which), ``128 + signal`` for a run a signal
  stopped (``oracle.stop``: it still ends with its report).
- ``cases`` runs exactly that many cases: never more in flight than are left.
- While a campaign runs, what was alive before it is frozen out of the garbage
  collector (``frozen_heap``); the campaign itself makes no cyclic garbage.
- ``jobs`` > 1 runs that many independent campaigns (seed, seed+1, ...) in
  processes of their own and merges them (``oracle.campaign.pool``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from oracle import environment, stop
from oracle.campaign.compare import Divergence, first_divergence, rc_class
from oracle.campaign.confirm import on_sanitizer
from oracle.campaign.findings import Finding, amend_finding, keep_finding
from oracle.campaign.generate import CaseGenerator
from oracle.campaign.known import KnownBug, affects, explain, known_bugs, triggered_bugs
from oracle.campaign.lifecycle_gen import LifecycleGenerator
from oracle.campaign.runner import CaseOutcome, Chain, Differential
from oracle.environment import Environment
from oracle.errors import OracleError
from oracle.libbpf.worker import Worker
from oracle.model.objects import NotModelledError
from oracle.model.oracle import Oracle
from oracle.model.versions import Profile, with_fixes
from oracle.ops import Op


@dataclass(frozen=True)
class CheckConfig:
    libbpf: str = "system"
    source: Path | None = None  # the tree a PATH .so was built from (its table)
    seconds: float | None = 60.0
    cases: int | None = None
    seed: int = 0
    jobs: int = 1
    findings: Path = Path("findings")
    strict: bool = False
    max_ops: int = 24
    lifecycle: float = 0.3  # share of cases that are object-lifecycle sequences
    timeout: float = 10.0
    shrink_tries: int = 600
    shrink_seconds: float = 20.0  # per finding: a long chain's candidates are slow to run
    batch: int = 128  # chained cases per worker batch
    fresh_every: int = 4  # one case on a fresh process state every this many batches
    #: and one fresh case with a known bug's cause (KB3's) every this many batches
    cause_every: int = 2
    avoid_known: bool = False  # generate no known-bug triggers (benchmarks: nothing may crash)


@dataclass
class JobStats:
    cases: int = 0
    ops: int = 0
    seconds: float = 0.0
    unmodelled: int = 0  # batches or cases dropped: the model cannot answer them
    findings: dict[str, Finding] = field(default_factory=dict)
    #: known bugs this build answers as fixed (``KnownBug.fix``): id -> cases seen
    fixed: dict[str, int] = field(default_factory=dict)
    #: (seconds, ops) when the first finding was found, and when it was written
    first_found: tuple[float, int] | None = None
    first_written: tuple[float, int] | None = None
    #: what went wrong without ending the run: a job process that died, ...
    errors: list[str] = field(default_factory=list)
    #: why the run ended before its budget (``stop.requested()``: ``"SIGINT"``...)
    interrupted: str | None = None
    #: fresh cases with a known bug's cause: id -> [cases, cases the model's answers held]
    causes: dict[str, list[int]] = field(default_factory=dict)
    #: chain failures after a run-past id divergence that their case alone does not
    #: reproduce: consequences of that finding, not findings (``Job.failed``)
    consequences: int = 0
    #: findings whose pattern chained cases steer around (``MixedCases.steer``)
    steered: list[str] = field(default_factory=list)

    def merge(self, other: JobStats) -> None:
        """Add another job's statistics and findings (deduplicated by signature)."""
        self.cases += other.cases
        self.ops += other.ops
        self.seconds = max(self.seconds, other.seconds)
        self.unmodelled += other.unmodelled
        self.consequences += other.consequences
        self.errors += other.errors
        self.steered += [s for s in other.steered if s not in self.steered]
        for bug_id, count in other.fixed.items():
            self.fixed[bug_id] = self.fixed.get(bug_id, 0) + count
        for bug_id, (cases, held) in other.causes.items():
            seen = self.causes.setdefault(bug_id, [0, 0])
            seen[0] += cases
            seen[1] += held
        for signature, finding in other.findings.items():
            if signature in self.findings:
                mine = self.findings[signature]
                mine.count += finding.count
                mine.seeds += finding.seeds
            else:
                self.findings[signature] = dataclasses.replace(finding,
                                                               seeds=list(finding.seeds))

    def rates(self) -> dict[str, float | None]:
        """ops/s before the first finding and after it was written (None: no finding)."""
        def rate(ops: int, seconds: float) -> float | None:
            return round(ops / seconds, 1) if seconds > 0 else None

        if self.first_found is None or self.first_written is None:
            return {"before_first_finding": None, "after_first_finding": None}
        return {"before_first_finding": rate(self.first_found[1], self.first_found[0]),
                "after_first_finding": rate(self.ops - self.first_written[1],
                                            self.seconds - self.first_written[0])}


def prepare(config: CheckConfig) -> Environment:
    """``environment.prepare`` for a check's target, plus the known-bug list's check."""
    env = environment.prepare(config.libbpf, config.source)
    known_bugs()  # a broken known list is bad input too
    return env


def check_writable_dir(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OracleError(f"cannot create {what} {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OracleError(f"{what} {path} is not writable")


def new_finding(env: Environment, confirmed: CaseOutcome, signature: str,
                config: CheckConfig, seed: int) -> Finding:
    """Classify and write one new finding (its case already shrunk and confirmed)."""
    finding = Finding(signature, confirmed.kind, confirmed.summary(), confirmed,
                      known=explain(env.version, signature, list(confirmed.ops)), seeds=[seed])
    keep_finding(config.findings, finding, env.info, seed, env.target)
    return finding


def rerun_crashes_on_sanitizer(env: Environment, stats: JobStats, config: CheckConfig) -> None:
    """After the campaign (a twin may take a minute to build): each confirmed crash of a
    plain build, run again on its ASan twin; its finding files say what that did."""
    if env.target.variant != "plain":
        return
    for finding in stats.findings.values():
        outcome = finding.outcome
        if outcome.crash is None or not outcome.confirmed or finding.sanitizer_run:
            continue
        if stop.requested() is not None:
            break
        finding.sanitizer_run = on_sanitizer(env, outcome.ops, config.timeout)
        if finding.directory is not None and finding.write_error is None:
            amend_finding(finding, env.info)


ProgressFn = Callable[[JobStats], None]
#: a chained case that hits a steered pattern is generated again at most this often
STEER_TRIES = 8
#: a finding's repeats that end chains this often make chained cases steer around it
STEER_AFTER = 5
#: the smallest chained batch (``run_job`` shrinks batches while failures repeat)
MIN_BATCH = 8


class MixedCases:
    """Registry/lookup cases and object-lifecycle sequences, in the configured mix.

    The lifecycle generator stays inside what the model covers; a sequence
    it cannot answer after all (``NotModelledError``) is dropped where it is
    run (``Chain.stream``, ``Job.fresh``), never compared.
    """

    def __init__(self, env: Environment, config: CheckConfig, seed: int) -> None:
        self.version = env.version
        self.bpf = env.bpf
        self.config = config
        self.rng = random.Random(seed)
        self.registry = CaseGenerator(env.profile, seed,
                                      allow_empty_sec=not config.avoid_known)
        self.lifecycle = LifecycleGenerator(seed)
        self.avoid_empty_sec = False  # set by avoid(): chained cases only
        self.profile = env.profile
        #: (op kind, the model's answer class) of repeating findings: chained cases only
        self.steered: set[tuple[type, str]] = set()

    def avoid(self, trigger: str) -> None:
        """Stop generating, in chained cases, what triggers a known bug already found.

        Every repeat would only crash the chain again (and restart it) and count
        an already-written finding.  Fresh cases (``next(fresh=True)``) keep
        generating it, so a build that fixed the bug is seen to answer as the
        model's fixed profile does.
        """
        if trigger == "registers_empty_sec":
            self.avoid_empty_sec = True

    def steer(self, divergence: Divergence) -> None:
        """Keep chained cases away from ``divergence``'s pattern: its op kind with the
        answer class the model gave it (``-EBUSY`` for a register).

        For a finding already written whose repeats change one side's state (every
        repeat ends the chain and wastes the rest of its batch): a chained case the
        model answers that way is generated again (up to ``STEER_TRIES`` times).
        Fresh cases keep generating it.
        """
        self.steered.add((type(divergence.op), rc_class(divergence.expected.rc)))

    def steers_clear(self, case: list[Op]) -> bool:
        """Whether the model, on a state of its own, answers no op of ``case`` with a
        steered pattern (a case it cannot answer is let through: it is dropped later)."""
        oracle = Oracle(self.profile, bpf=self.bpf)
        with contextlib.suppress(NotModelledError):
            for op in case:
                if (type(op), rc_class(oracle.apply(op).rc)) in self.steered:
                    return False
        return True

    def next(self, *, fresh: bool = False) -> list[Op]:
        case = self.generate(fresh=fresh)
        if fresh or not self.steered:
            return case
        for _ in range(STEER_TRIES):
            if self.steers_clear(case):
                break
            case = self.generate(fresh=False)
        return case

    def cause(self) -> list[Op]:
        """A fresh case with KB3's cause: its shape on purpose, or any registry change
        under open objects."""
        if self.rng.random() < 0.5:
            return self.lifecycle.stale_binding()
        return self.lifecycle.sequence(under_open=True)

    def generate(self, *, fresh: bool) -> list[Op]:
        self.registry.allow_empty_sec = not self.config.avoid_known and (
            fresh or not self.avoid_empty_sec)
        if fresh and not self.config.avoid_known and self.rng.random() < 0.25:
            # fresh cases also change the registry under open objects (KB3's cause)
            return self.lifecycle.sequence(under_open=True)
        if self.rng.random() >= self.config.lifecycle:
            return self.registry.case(self.config.max_ops)
        return self.lifecycle.sequence()


def needs_anchor(version: str) -> bool:
    """Chains on this release must never empty the registry (a documented bug, e.g. KB2)."""
    return affects(version, "registers_after_emptying")


class Job:
    """One campaign: chained batches for throughput plus one fresh case per batch."""

    def __init__(self, env: Environment, config: CheckConfig, seed: int,
                 differential: Differential, cases: MixedCases) -> None:
        self.env = env
        self.config = config
        self.seed = seed
        self.differential = differential
        self.cases = cases
        self.stats = JobStats()
        self.chain: Chain | None = None
        self.started = time.monotonic()
        self.chain_repeats: dict[str, int] = {}  # repeats that ended a chain
        #: signatures found to be consequences of a run-past id divergence (``failed``)
        self.consequence_of_renumbering: set[str] = set()

    def adopted_fix(self, outcome: CaseOutcome) -> bool:
        """Whether a known bug's fix explains ``outcome`` (``fixed_known_bug``); if so,
        this build has it: answer with it from now on (module rules)."""
        bug = fixed_known_bug(self.differential.model, outcome, self.env.bpf)
        if bug is None:
            return False
        self.stats.fixed[bug.id] = self.stats.fixed.get(bug.id, 0) + 1
        model = with_fixes(self.differential.model, dict(bug.fix))
        self.differential.model = model
        if self.chain is not None:
            self.chain.model = model  # its next restart (every failure ends a chain)
        return True

    def fresh(self, ops: list[Op]) -> None:
        """One case on a fresh libbpf process state."""
        try:
            outcome = self.differential.run(ops)
        except NotModelledError:
            self.stats.unmodelled += 1
            return
        self.stats.cases += 1
        self.stats.ops += len(outcome.ops)
        for bug_id in triggered_bugs(self.env.version, ops):  # checked against the model
            seen = self.stats.causes.setdefault(bug_id, [0, 0])
            seen[0] += 1
            seen[1] += not outcome.failed
        if outcome.failed:
            self.failed(outcome, None)

    def failed(self, outcome: CaseOutcome, case: Sequence[Op] | None, *,
               renumbered: bool = False, chained: bool = False) -> None:
        """Count a failure; a new signature becomes a written finding.

        A failure that a known bug's fixed profile answers exactly is no failure:
        this build has that fix, and the job's model takes it from now on.  A
        failure in a chain that had run past a register whose ids differed
        (``renumbered``) and that its case alone does not reproduce is a
        consequence of that finding, counted in ``JobStats.consequences``.
        """
        signature = outcome.signature
        assert signature is not None
        if signature in self.stats.findings:
            finding = self.stats.findings[signature]
            finding.count += 1
            if chained:
                self.chain_repeats[signature] = self.chain_repeats.get(signature, 0) + 1
                if (self.chain_repeats[signature] == STEER_AFTER
                        and outcome.divergence is not None and not self.config.strict):
                    self.cases.steer(outcome.divergence)  # it ends chains: steer around it
                    self.stats.steered.append(signature)
            return
        if self.stats.fixed and not outcome.actual and not self.differential.run(
                outcome.ops).failed:
            return  # the chain was planned before a fix was adopted; with it, it conforms
        if renumbered and signature in self.consequence_of_renumbering:
            self.stats.consequences += 1  # seen before as one: no need to run it alone
            return
        if case is not None:  # most chain failures are the case's own: prefer it alone
            with contextlib.suppress(NotModelledError):
                alone = self.differential.run(case)
                if alone.signature == signature:
                    outcome = alone
                elif alone.failed and self.adopted_fix(alone):
                    return
                elif renumbered:
                    self.stats.consequences += 1
                    self.consequence_of_renumbering.add(signature)
                    return
        found = (time.monotonic() - self.started, self.stats.ops)
        confirmed = self.differential.minimise(outcome, self.config.shrink_tries,
                                               self.config.shrink_seconds)
        if self.adopted_fix(confirmed):
            return
        finding = new_finding(self.env, confirmed, signature, self.config, self.seed)
        self.stats.findings[signature] = finding
        if self.chain is not None:  # repeats in stateless ops: count them, run past them
            self.chain.tolerated.add(signature)
        if self.stats.first_found is None:
            self.stats.first_found = found
            self.stats.first_written = (time.monotonic() - self.started, self.stats.ops)
        if finding.known is not None and not self.config.strict:
            self.cases.avoid(finding.known.trigger)


def fixed_known_bug(model: Profile, outcome: CaseOutcome, bpf: bool) -> KnownBug | None:
    """The known bug whose fix (``KnownBug.fix``) explains ``outcome`` exactly: its cause
    is in the case, and the model with that fix gives every answer libbpf gave."""
    if outcome.crash is not None or not outcome.actual:  # a chain's failure has no answers
        return None
    ops = list(outcome.ops)
    answers = [r.answer for r in outcome.actual]
    for bug in known_bugs():
        if not bug.fix or not bug.triggered(model.version, ops):
            continue
        fixed = with_fixes(model, dict(bug.fix))
        if fixed is model:
            continue
        with contextlib.suppress(NotModelledError):
            expected = Oracle(fixed, bpf=bpf).run(ops)
            if first_divergence(ops, expected, answers) is None:
                return bug
    return None


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep what is alive before a campaign (modules, release tables, the oracle's
    indexes) out of the garbage collector's full passes while it runs: none of it
    becomes garbage, and every full pass would walk all of it again."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_job(env: Environment, config: CheckConfig, job: int,
            progress: ProgressFn | None = None) -> JobStats:
    """One campaign until the time or case budget is spent (see module rules)."""
    seed = config.seed + job
    cases = MixedCases(env, config, seed)
    start = time.monotonic()
    deadline = start + config.seconds if config.seconds is not None else None

    def budget_left(stats: JobStats, issued: int = 0) -> bool:
        if stop.requested() is not None:
            return False
        if config.cases is not None and stats.cases + issued >= config.cases:
            return False
        return deadline is None or time.monotonic() < deadline

    with frozen_heap(), Worker(env.target, timeout=config.timeout, log=False) as chained, \
            Worker(env.target, timeout=config.timeout) as fresh:
        job_ = Job(env, config, seed, Differential(fresh, env.profile, bpf=env.bpf), cases)
        stats = job_.stats
        chain = Chain(chained, env.profile, anchor=needs_anchor(env.version), bpf=env.bpf)
        job_.chain = chain
        job_.started = start  # the clock stats.seconds runs on

        batch = [config.batch]  # shrinks while failures are frequent, regrows after
        in_flight = [0]  # cases handed to the chain whose results are not back yet

        def batches() -> Iterator[Iterable[list[Op]]]:
            while budget_left(stats):
                if config.cases is None:  # generated lazily: planning polls the worker
                    yield (cases.next() for _ in range(batch[0]))
                    continue
                # exactly ``cases``: never more in flight than the budget has left (an
                # empty batch lets the one in flight come back); a list, so a batch
                # dropped unplanned still says how many cases it held
                size = max(0, min(batch[0], config.cases - stats.cases - in_flight[0]))
                in_flight[0] += size
                yield [cases.next() for _ in range(size)]

        for number, result in enumerate(chain.stream(batches())):
            in_flight[0] -= result.planned
            # the failing case ran too; those after it in its batch did not
            stats.cases += result.cases + (result.case is not None)
            stats.ops += result.ops
            stats.unmodelled += result.unmodelled
            for signature, repeats in result.repeats.items():  # chain.tolerated ones
                stats.findings[signature].count += repeats
            # a failing batch wastes every case after the failing one: while failures
            # come often, batch about twice the cases that passed before one
            batch[0] = (max(MIN_BATCH, min(config.batch, 2 * (result.cases + 1)))
                        if result.failure is not None else min(config.batch, 2 * batch[0]))
            if result.failure is not None:
                job_.failed(result.failure, result.case, renumbered=result.renumbered,
                            chained=True)
            if number % config.fresh_every == 0 and budget_left(stats, in_flight[0]):
                job_.fresh(cases.next(fresh=True))  # the paths only an empty state has
            if number % config.cause_every == 1 and not config.avoid_known \
                    and budget_left(stats, in_flight[0]):
                job_.fresh(cases.cause())  # KB3's
            stats.seconds = time.monotonic() - start
            if progress is not None:
                progress(stats)
    stats.seconds = time.monotonic() - start
    return stats


def run_check(config: CheckConfig, progress: ProgressFn | None = None,
              announce: Callable[[Environment], None] | None = None,
              ) -> tuple[Environment, JobStats]:
    """Run the whole campaign; merge the jobs' statistics and findings.

    ``announce`` is told the environment once it is prepared, before any case runs.
    A stop request (``oracle.stop``) ends it early, with what it found so far.
    """
    env = prepare(config)
    check_writable_dir(config.findings, "findings directory")
    if announce is not None:
        announce(env)
    if config.jobs == 1:
        stats = run_job(env, config, 0, progress)
    else:
        from oracle.campaign.pool import run_jobs  # it imports this module

        stats = run_jobs(env, config, progress)
    rerun_crashes_on_sanitizer(env, stats, config)
    stats.interrupted = stop.requested()
    return env, stats


def exit_status(stats: JobStats, strict: bool) -> int:
    """``128 + signal`` for a run a signal stopped; else 1 for a confirmed finding that
    is not a known bug (any confirmed one if strict); else 2 when something went wrong
    (a job died, a finding could not be written); else 0."""
    if stats.interrupted is not None:
        return stop.exit_status(stats.interrupted)
    for finding in stats.findings.values():
        if finding.outcome.confirmed and (finding.known is None or strict):
            return 1
    if stats.errors or any(f.write_error for f in stats.findings.values()):
        return 2
    return 0


class Progress(Protocol):
    """What a progress line reads of a campaign's statistics."""

    cases: int
    ops: int
    seconds: float
    findings: dict[str, Finding]


class ProgressLine:
    """A live line on a terminal; a plain line every ``every`` seconds elsewhere."""

    def __init__(self, stream: Any = sys.stderr, every: float = 10.0) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every = 0.25 if self.tty else every
        self.last = 0.0

    def __call__(self, stats: Progress) -> None:
        self.show(self.text(stats))

    def show(self, line: str) -> None:
        """``line`` now, unless the last one was shown less than ``every`` s ago."""
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        self.write(("\r" if self.tty else "") + line + ("" if self.tty else "\n"))

    def write(self, text: str) -> None:
        """Progress is optional: a stream that fails (closed, full) is dropped, not fatal."""
        if self.stream is None:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None

    @staticmethod
    def text(stats: Progress) -> str:
        rate = stats.ops / stats.seconds if stats.seconds else 0.0
        known = sum(1 for f in stats.findings.values() if f.known)
        return (f"check: {stats.cases} cases, {stats.ops} ops, {rate:,.0f} ops/s,"
                f" {len(stats.findings)} findings ({known} known)")

    def done(self) -> None:
        if self.tty:
            self.write("\n")
