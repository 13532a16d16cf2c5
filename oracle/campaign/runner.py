"""Running one case on real libbpf and on the oracle, and naming what differs.

Rules:
- Every case starts from a fresh libbpf process state (the handler registry is
  process-global and the id counter never goes back), so a case's trace
  replays exactly on its own: ids start at 1 on both sides.
- The oracle answers every op; libbpf answers until it dies.  The outcome is
  the first divergence among the ops both answered, or the crash if libbpf
  died before any divergence (``CaseOutcome``).
- Chains (``Chain``), for throughput: many cases back to back in one worker
  process and one oracle, sent in big batches, the oracle computing its
  answers while libbpf computes its own (``Worker.submit``, no thread).  Each case's
  ``HandleRef``/``ObjRef`` s are rebased onto the chain's numbering and the
  case is followed by cleanup ops (close its objects, unregister its
  handlers) that both sides run and compare, so every case starts from an
  empty registry -- but with handler ids continuing.  Where emptying the
  registry trips a documented libbpf bug (1.1.2's dangling array, KB2), the
  chain starts with an anchor handler that no generated name matches and that
  is never unregistered.  A chain's op list from its start is itself a valid
  fresh case, so any chain failure replays (and shrinks) with ``run_fresh``.
- Signatures (``CaseOutcome.signature``) deduplicate findings:
  ``divergence:<op>:<field>:<expected>-><actual>`` (``compare.Divergence``) or
  ``<crash|hang|exit>:<sanitizer kind, signal or exit code>:<top libbpf frame>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Final

from oracle import stop
from oracle.campaign.compare import Divergence, first_divergence
from oracle.campaign.known import without_new_known_causes
from oracle.campaign.shrink import shrink
from oracle.exits import signal_name
from oracle.libbpf.results import OpResult
from oracle.libbpf.worker import BatchResult, CrashEvent, Flight, Worker
from oracle.model.objects import NotModelledError
from oracle.model.oracle import Oracle
from oracle.model.versions import Profile, as_profile
from oracle.ops import (
    OP_NAMES,
    Answer,
    AttachTypeByName,
    Close,
    HandleRef,
    ObjRef,
    Op,
    Open,
    ProgInfo,
    ProgTypeByName,
    Register,
    Unregister,
    rebase,
)

#: frames that belong to the sanitizer runtime, libc or Python rather than libbpf
FOREIGN_FRAME_PREFIXES: Final = (
    "__asan", "__interceptor", "__sanitizer", "__ubsan", "__lsan", "__libc", "__GI_",
    "_int_", "malloc", "calloc", "realloc", "free", "abort", "raise", "__pthread", "_Py",
    "Py", "ffi_", "cfunction", "strlen", "strcmp", "strncmp", "memcmp", "memcpy", "memset",
    "_start", "main", "__fortify", "malloc_printerr", "<unknown>", "0x", "libc.so",
    "libffi", "_cffi",
)


def top_libbpf_frame(frames: Sequence[str]) -> str:
    """The first frame that is libbpf's own: the function name only (stable across builds)."""
    for frame in frames:
        function = frame.split(" ", 1)[0]
        if function and not function.startswith(FOREIGN_FRAME_PREFIXES):
            return function
    return "unknown"


def crash_signature(event: CrashEvent) -> str:
    """``<kind>:<cause>:<where>``: where is the top libbpf frame, or (no frames, as in
    plain builds) the kind of op that was running."""
    if event.sanitizer:
        cause = event.sanitizer
    elif event.signal is not None:
        cause = signal_name(event.signal)
    else:
        cause = f"exit{event.exit_code}"
    where = top_libbpf_frame(event.frames)
    if where == "unknown" and event.ops:
        where = "op=" + OP_NAMES[type(event.ops[-1])]
    return f"{event.kind}:{cause}:{where}"


@dataclass(frozen=True)
class CaseOutcome:
    """What one case did: the ops, both sides' answers, and the first difference."""

    ops: tuple[Op, ...]
    expected: tuple[Answer, ...]
    actual: tuple[OpResult, ...]
    divergence: Divergence | None = None
    crash: CrashEvent | None = None
    #: False when a fresh run of the case did not fail the same way (flaky)
    confirmed: bool = True

    @property
    def failed(self) -> bool:
        return self.divergence is not None or self.crash is not None

    @property
    def kind(self) -> str:
        """A finding's kind: ``divergence``, or the crash's ``crash``/``hang``/``exit``."""
        return self.crash.kind if self.crash is not None else "divergence"

    @property
    def signature(self) -> str | None:
        if self.divergence is not None:
            return self.divergence.signature
        if self.crash is not None:
            return crash_signature(self.crash)
        return None

    def summary(self) -> str:
        if self.divergence is not None:
            return self.divergence.describe()
        if self.crash is not None:
            crash = self.crash
            what = crash.sanitizer or (signal_name(crash.signal) if crash.signal else
                                       f"exit {crash.exit_code}")
            return (f"libbpf {crash.kind} ({what}) in {top_libbpf_frame(crash.frames)}"
                    f" on op {crash.op_index}")
        return "conforms"


class Differential:
    """Runs cases on one libbpf worker and one release's oracle (see module rules)."""

    def __init__(self, worker: Worker, model: str | Profile, *, bpf: bool = True) -> None:
        self.worker = worker
        self.model = as_profile(model)
        self.version = self.model.version
        self.bpf = bpf  # whether this process may use bpf(): Load/Attach answer NO_BPF if not

    def run(self, ops: Sequence[Op]) -> CaseOutcome:
        ops = tuple(ops)
        expected = tuple(Oracle(self.model, bpf=self.bpf).run(ops))
        batch = self.worker.run_fresh(ops)
        answers = [r.answer for r in batch.results]
        divergence = first_divergence(list(ops), list(expected), answers)
        crash = batch.crash if divergence is None else None
        return CaseOutcome(ops, expected, batch.results, divergence, crash)

    def minimise(self, outcome: CaseOutcome, max_tries: int,
                 max_seconds: float | None = None) -> CaseOutcome:
        """``outcome``'s case shrunk (``shrink.shrink``, same signature only, never bringing
        in a documented bug's cause the case lacked) and run again on a fresh state to
        confirm.  The whole case runs again on a fresh state first: if it does not fail
        the same way, nothing is shrunk.  If it or the minimal case does not fail the
        same way, the result is the case as it was, run on a fresh state, marked
        ``confirmed=False`` (a flaky failure: never a finding that fails the run)."""
        signature = outcome.signature
        assert signature is not None
        ops = list(outcome.ops)
        if outcome.crash is not None:
            ops = ops[: outcome.crash.op_index + 1]
        again = self.run(ops)
        if again.signature != signature:  # the whole case does not fail again: no shrinking
            return dataclasses.replace(again, divergence=outcome.divergence,
                                       crash=outcome.crash, confirmed=False)
        failing = without_new_known_causes(self.version, ops, self.signature)
        minimal = shrink(ops, signature, failing, max_tries=max_tries, max_seconds=max_seconds)
        confirmed = self.run(minimal)  # run_fresh: a fresh copy of the pristine child
        if confirmed.signature == signature:
            return confirmed
        return dataclasses.replace(again, divergence=outcome.divergence, crash=outcome.crash,
                                   confirmed=False)

    def signature(self, ops: list[Op]) -> str | None:
        """The shrinker's predicate: this case's signature on a fresh process (None for
        a candidate the model cannot answer: it is never compared; None for every
        candidate once a stop is requested, so shrinking ends at once)."""
        if stop.requested() is not None:
            return None
        try:
            return self.run(ops).signature
        except NotModelledError:
            return None


#: registered first by chains that must never empty the registry (see module rules)
ANCHOR: Final = Register(b"\x7f\x01sec-oracle-anchor/", 0, 0)


def cleanup_ops(oracle: Oracle, opens: range, keep: frozenset[int]) -> list[Op]:
    """Close the case's objects, then unregister every live handler not in ``keep``."""
    ops: list[Op] = [Close(ObjRef(i)) for i in opens]
    handlers = list(oracle.custom_handlers())
    if oracle.registry.fallback is not None:
        handlers.append(oracle.registry.fallback)
    ops += [Unregister(HandleRef(h.registration)) for h in handlers
            if h.registration not in keep]
    return ops


@dataclass
class Plan:
    """A batch of cases as chained ops, with the oracle's answers; ``ends[i]`` closes case i."""

    ops: list[Op]
    expected: list[Answer]
    ends: list[int]
    cases: list[Sequence[Op]]


@dataclass
class ChainResult:
    """What one batch did: how many of its cases passed, and the failure if any."""

    cases: int
    ops: int
    failure: CaseOutcome | None = None
    #: the failing case as generated (its own numbering), when the failure is inside one
    case: Sequence[Op] | None = None
    #: batches dropped because the model cannot answer one of their cases
    unmodelled: int = 0
    #: repeats of tolerated signatures the batch ran past: signature -> count
    repeats: dict[str, int] = dataclasses.field(default_factory=dict)
    #: the cases the batch was given (passed, failing and lost after a failure)
    planned: int = 0
    #: the failure came after the chain ran past a register whose ids differed: the
    #: two sides number handlers differently since, so it may only be a consequence
    renumbered: bool = False
    #: the chain started again after this batch (as after a failure): plan again on it
    restarted: bool = False


#: ops whose answer never changes libbpf's state: a divergence in one leaves the
#: chain's model and libbpf in step, so a chain can run past a repeat of it
STATELESS_OPS: Final = (ProgTypeByName, AttachTypeByName, ProgInfo)


def leaves_state_alone(divergence: Divergence) -> bool:
    """Both sides are in the same state after this divergence: a stateless op; a
    register/unregister that failed on both sides (both check before they change
    anything: ``libbpf_register_prog_handler``, ``libbpf_unregister_prog_handler``);
    or a register that succeeded on both sides with different ids (each side
    resolves ``HandleRef`` to its own id, so the chain goes on in step)."""
    op, expected, actual = divergence.op, divergence.expected, divergence.actual
    if isinstance(op, STATELESS_OPS):
        return True
    if isinstance(op, Register) and expected.rc > 0 and actual.rc > 0:
        return True
    return isinstance(op, Register | Unregister) and expected.rc < 0 and actual.rc < 0


class Chain:
    """Cases back to back in one worker process and one oracle (see module rules)."""

    def __init__(self, worker: Worker, model: str | Profile, *, anchor: bool,
                 bpf: bool = True, max_ops: int = 5_000) -> None:
        self.worker = worker
        self.model = as_profile(model)
        self.version = self.model.version
        self.anchor = anchor
        self.bpf = bpf
        self.max_ops = max_ops
        #: signatures of findings already written: stateless repeats are run past
        self.tolerated: set[str] = set()
        self._restart()

    def _restart(self) -> None:
        self.worker.reset()
        self.oracle = Oracle(self.model, bpf=self.bpf)
        self.history: list[Op] = []
        self.registers = self.objects = 0
        self.renumbered = False  # ran past a register whose ids differed (ChainResult)
        self.keep: frozenset[int] = frozenset({0}) if self.anchor else frozenset()
        self.prefix: list[Op] = [ANCHOR] if self.anchor else []

    def plan(self, cases: Iterable[Sequence[Op]], poll: Callable[[], None] | None = None) -> Plan:
        """Rebase ``cases`` onto the chain, add cleanups, and compute the oracle's answers;
        ``poll`` is called after each case (``Flight.poll``)."""
        plan = Plan([], [], [], [])
        oracle = self.oracle
        for op in self.prefix:
            plan.ops.append(op)
            plan.expected.append(oracle.apply(op))
            self.registers += type(op) is Register
        self.prefix = []
        for case in cases:
            plan.cases.append(case)
            registers, objects = self.registers, self.objects
            for op in case:
                op = rebase(op, registers, objects)
                plan.ops.append(op)
                plan.expected.append(oracle.apply(op))
                if type(op) is Register:
                    self.registers += 1
                elif type(op) is Open:
                    self.objects += 1
            for op in cleanup_ops(oracle, range(objects, self.objects), self.keep):
                plan.ops.append(op)
                plan.expected.append(oracle.apply(op))
            plan.ends.append(len(plan.ops))
            if poll is not None:
                poll()
        return plan

    def judge(self, plan: Plan, batch: BatchResult) -> ChainResult:
        """Compare a batch's answers; on failure, the chain so far as one fresh case.

        A divergence that leaves both sides' state alone (``leaves_state_alone``) and
        whose signature is in ``tolerated`` (a finding already written) is counted
        and run past."""
        actual = [r.answer for r in batch.results]
        repeats: dict[str, int] = {}
        start = 0
        while True:
            divergence = first_divergence(plan.ops, plan.expected, actual, start)
            if divergence is None or not leaves_state_alone(divergence) \
                    or divergence.signature not in self.tolerated:
                break
            repeats[divergence.signature] = repeats.get(divergence.signature, 0) + 1
            self.renumbered |= isinstance(divergence.op, Register) and divergence.actual.rc > 0
            start = divergence.index + 1
        if divergence is None and batch.crash is None:
            self.history += plan.ops
            restarted = self.renumbered  # its ids no longer match: keep it to one batch
            if restarted:
                self._restart()
            return ChainResult(len(plan.ends), len(plan.ops), repeats=repeats,
                               planned=len(plan.cases), restarted=restarted)
        if divergence is not None:
            failed_at = divergence.index
        else:
            assert batch.crash is not None
            failed_at = batch.crash.op_index
        passed = sum(1 for end in plan.ends if end <= failed_at)
        done = plan.ends[passed - 1] if passed else 0
        chain_ops = tuple(self.history + plan.ops[: failed_at + 1])
        if divergence is not None:
            divergence = dataclasses.replace(divergence, index=len(self.history) + divergence.index)
        renumbered = self.renumbered
        self._restart()
        failure = CaseOutcome(chain_ops, (), (), divergence,
                              batch.crash if divergence is None else None)
        case = plan.cases[passed] if passed < len(plan.cases) else None
        return ChainResult(passed, done, failure, case, repeats=repeats,
                           planned=len(plan.cases), renumbered=renumbered)

    def stream(self, batches: Iterator[Iterable[Sequence[Op]]]) -> Iterator[ChainResult]:
        """Run batches of cases; the oracle plans batch k+1 while libbpf runs batch k.

        No thread: batch k is ``Worker.submit`` ted and planning polls its pipes
        after every case, so the worker never waits on the GIL.  Batch k+1 is
        submitted as soon as batch k is judged, before the caller sees k's result.
        A batch the model cannot answer (``NotModelledError``, rare) is dropped
        and the chain starts again.
        """
        pending: tuple[Plan, Flight] | None = None
        for cases in batches:
            in_chain = len(self.history) + (len(pending[0].ops) if pending else 0)
            if in_chain > self.max_ops:  # keep failing chains short to replay: start again
                if pending is not None:
                    yield self.judge(pending[0], pending[1].result())
                    pending = None
                self._restart()
            done: ChainResult | None = None
            try:
                plan = self.plan(cases, pending[1].poll if pending else None)
                if pending is not None:
                    done = self.judge(pending[0], pending[1].result())
                    pending = None
                    if done.failure is not None or done.restarted:  # plan again on it
                        plan = self.plan(plan.cases)
                pending = (plan, self.worker.submit(plan.ops))
            except NotModelledError:
                if pending is not None:
                    done = self.judge(pending[0], pending[1].result())
                    pending = None
                self._restart()
                if done is not None:
                    yield done
                yield ChainResult(0, 0, unmodelled=1,
                                  planned=len(cases) if isinstance(cases, Sized) else 0)
                continue
            if done is not None:
                yield done
        if pending is not None:
            yield self.judge(pending[0], pending[1].result())
