"""``sec-oracle replay``: run recorded traces again and report where the answers differ.

Rules:
- Each trace runs on a fresh process: a fresh ``Oracle`` (release from the
  trace header's ``libbpf.version`` unless ``version`` overrides it) or, with a
  libbpf target (``oracle.libbpf.targets``: ``system``, ``1.7.0``,
  ``1.7.0+asan``, a path), a freshly reset ``oracle.libbpf.worker.Worker``
  (crash-isolated; ops go in batches of ``BATCH``).
- Every record that carries an answer is checked: the answer must equal the
  replayed one exactly (``rc``, every out-parameter, ``None`` meaning
  "untouched", and the handler callback calls libbpf made, in order).
  Records without an answer are run, not checked.  Log lines are never
  compared.
- Object ops (``open`` .. ``close``) replay like the others.  ``load`` and
  ``attach`` need bpf(): a live libbpf answers ``NO_BPF`` (-ENOSYS) where the
  worker may not call it; the oracle models a process with bpf() unless
  ``bpf=False`` (``--no-bpf``, for traces recorded without it).
- A trace ends in one of three states: ``conforms`` (no difference),
  ``diverges`` (some answer differs, or the live libbpf died), ``error`` (the
  trace is unreadable or corrupt, or its ops cannot be run, e.g. an unknown
  release or a ``fault`` op on the oracle).  Traces are independent: one
  corrupt trace never stops the others from being replayed and reported.
- Exit status of the command: 2 if any trace is in ``error``, else 1 if any
  ``diverges``, else 0.
- Record ``i`` (0-based) of a trace is on line ``i + 2`` (line 1 is the
  header; the reader refuses blank lines), so a difference names both.
- A difference is a ``compare.Divergence`` (text: ``describe``); ops never run are ``crash``.
- At most ``MAX_REPORTED`` differences per trace are kept; all are counted.
- Traces are streamed, never read whole (``TraceReader``: one line at a
  time, within the limits ``MAX_LINE_BYTES``, ``MAX_DEPTH`` and
  ``MAX_OBJECT_BYTES`` of ``oracle.traces``); a live replay sends
  ``BATCH`` records at a time, so a corrupt line past the first batch ends its
  trace in ``error`` after the batches before it ran.  A PATH that is not a
  regular file (a FIFO, a device) is an ``error`` unless ``allow_special``
  (``--allow-special``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from oracle.campaign.compare import Divergence
from oracle.errors import OracleError, TraceError
from oracle.model.oracle import Oracle
from oracle.model.versions import Profile, profile_for
from oracle.ops import (
    Answer,
    AttachTypeByName,
    Callback,
    HandleRef,
    HandlerOpts,
    Op,
    ProgTypeByName,
    Register,
    Unregister,
)
from oracle.traces import (
    LibbpfInfo,
    Record,
    TraceHeader,
    TraceReader,
    encode_answer,
    encode_op,
    write_trace,
)

if TYPE_CHECKING:
    from oracle.libbpf.worker import TargetLike, Worker

MAX_REPORTED: Final = 100
BATCH: Final = 4096
Status = Literal["conforms", "diverges", "error"]


# ---------------------------------------------------------------------------
# results


def record_line(index: int) -> int:
    """The file line of record ``index`` (see module rules)."""
    return index + 2


def describe(d: Divergence) -> str:
    """``op I (line L) <op>: <fact>; <fact>...`` (``Divergence.facts``)."""
    return f"op {d.index} (line {record_line(d.index)}) {op_text(d.op)}: " + "; ".join(d.facts())


@dataclass(frozen=True, slots=True)
class TraceResult:
    """The replay of one trace (see module rules for ``status``)."""

    path: str
    target: str  # "oracle 1.7.0" or "libbpf <path>"
    ops: int = 0
    checked: int = 0
    divergences: tuple[Divergence, ...] = ()
    divergence_count: int = 0
    seconds: float = 0.0
    error: str | None = None
    crash: str | None = None

    @property
    def status(self) -> Status:
        if self.error is not None:
            return "error"
        return "diverges" if self.divergence_count or self.crash else "conforms"

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "target": self.target,
            "ops": self.ops,
            "checked": self.checked,
            "divergence_count": self.divergence_count,
            "divergences": [
                {"index": d.index, "line": record_line(d.index), "op": encode_op(d.op),
                 "expected": _answer_json(d.expected), "actual": _answer_json(d.actual),
                 "text": describe(d)}
                for d in self.divergences
            ],
            "ops_per_s": round(self.ops_per_s),
            "error": self.error,
            "crash": self.crash,
        }


@dataclass(frozen=True, slots=True)
class ReplayResult:
    traces: tuple[TraceResult, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        statuses = {t.status for t in self.traces}
        if "error" in statuses:
            return 2
        return 1 if "diverges" in statuses else 0


def _answer_json(answer: Answer) -> dict[str, Any]:
    """The answer as a trace writes it (``rc`` a number here, for scripts)."""
    return encode_answer(answer) | {"rc": answer.rc}


def op_text(op: Op, limit: int = 240) -> str:
    """``kind {args as in the trace}``, shortened to ``limit`` characters."""
    encoded = encode_op(op)
    text = f"{encoded['op']} {json.dumps(encoded['args'], separators=(',', ':'))}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------
# replay against the oracle


def replay(paths: Iterable[str | os.PathLike[str]], *, version: str | Profile | None = None,
           libbpf: str | None = None, bpf: bool = True,
           allow_special: bool = False) -> ReplayResult:
    """Replay each trace on a fresh oracle (or on a libbpf target, see ``--libbpf``);
    ``bpf=False``: the oracle models a process without bpf(); ``allow_special``:
    read FIFOs and devices too (see module rules)."""
    names = [os.fspath(p) for p in paths]
    if libbpf is None:
        return ReplayResult(tuple(replay_on_oracle(p, version, bpf=bpf,
                                                   allow_special=allow_special) for p in names))
    return replay_on_libbpf(names, libbpf, allow_special=allow_special)


def replay_on_oracle(path: str, version: str | Profile | None = None, *,
                     bpf: bool = True, allow_special: bool = False) -> TraceResult:
    """One trace on a fresh ``Oracle``; never raises for bad input (see ``error``)."""
    start = time.perf_counter()
    count = checked = differing = 0
    found: list[Divergence] = []
    target = "oracle" if version is None else f"oracle {as_version(version)}"
    try:
        with TraceReader(path, allow_special=allow_special) as reader:
            oracle = Oracle(version or reader.header.libbpf.version, bpf=bpf)
            target = f"oracle {oracle.version}"
            apply = oracle.apply
            for record in reader:
                try:
                    answer = apply(record.op)
                except OracleError as exc:
                    raise TraceError(f"{path}: line {record_line(count)}: op {count}: the oracle"
                                     f" cannot run it: {exc}") from None
                expected = record.answer
                if expected is not None:
                    checked += 1
                    if answer != expected:
                        differing += 1
                        if len(found) < MAX_REPORTED:
                            found.append(Divergence(count, record.op, expected, answer))
                count += 1
    except OracleError as exc:
        return TraceResult(path, target, count, checked, tuple(found), differing,
                           time.perf_counter() - start, error=str(exc))
    return TraceResult(path, target, count, checked, tuple(found), differing,
                       time.perf_counter() - start)


# ---------------------------------------------------------------------------
# replay against a real libbpf (the crash-isolated worker)


def resolve_target(spec: str) -> TargetLike:
    """The libbpf ``spec`` names (``oracle.libbpf.targets``: system, VERSION[+asan|+fuzz], PATH)."""
    from oracle.libbpf.targets import resolve

    return resolve(spec)


def replay_on_libbpf(paths: Sequence[str], spec: str, *,
                     allow_special: bool = False) -> ReplayResult:
    """Each trace on a fresh worker process of the libbpf ``spec`` names."""
    from oracle.libbpf.worker import Worker

    target = resolve_target(spec)
    with Worker(target) as worker:
        return ReplayResult(tuple(_replay_live(worker, path, target, allow_special)
                                  for path in paths))


@dataclass
class _Live:
    """What a live replay has seen so far (it streams: ``BATCH`` records at a time)."""

    ops: int = 0
    checked: int = 0
    differing: int = 0
    found: list[Divergence] = field(default_factory=list)
    crash: str | None = None

    def run(self, worker: Worker, records: list[Record]) -> None:
        batch = worker.run([r.op for r in records])
        first = self.ops
        for index, (record, result) in enumerate(zip(records, batch.results, strict=False)):
            self.ops += 1
            actual = result.answer
            if record.answer is None:
                continue  # answers stop short of records only where the live libbpf died
            self.checked += 1
            if actual != record.answer:
                self.differing += 1
                if len(self.found) < MAX_REPORTED:
                    self.found.append(Divergence(first + index, record.op, record.answer, actual))
        if batch.crash is not None:
            event = batch.crash
            where = first + event.op_index
            what = event.sanitizer or event.message or event.kind
            self.crash = (f"libbpf {event.kind} on op {where} (line {record_line(where)}):"
                          f" {what}")


def _replay_live(worker: Worker, path: str, target: TargetLike,
                 allow_special: bool = False) -> TraceResult:
    name = f"libbpf {target.path}"
    start = time.perf_counter()
    live = _Live()
    error: str | None = None
    try:
        with TraceReader(path, allow_special=allow_special) as reader:
            worker.reset()
            pending: list[Record] = []
            for record in reader:
                pending.append(record)
                if len(pending) == BATCH:
                    live.run(worker, pending)
                    pending = []
                    if live.crash is not None:
                        break
            if pending and live.crash is None:
                live.run(worker, pending)
    except TraceError as exc:
        error = str(exc)
    except OracleError as exc:
        error = f"{path}: {exc}"
    return TraceResult(path, name, live.ops, live.checked, tuple(live.found), live.differing,
                       time.perf_counter() - start, error=error, crash=live.crash)


# ---------------------------------------------------------------------------
# benchmark


def demo_ops(n: int, seed: int = 0) -> list[Op]:
    """A campaign-like op mix: lookups of built-in and custom names, some churn of handlers."""
    rng = random.Random(seed)
    names = [b"kprobe/do_sys_open", b"socket", b"xdp", b"cgroup/connect4", b"tp/a/b", b"nope",
             b"?socket", b"uprobe//bin/sh:main"] + [b"custom%d/x" % i for i in range(24)]
    ops: list[Op] = []
    registers = 0
    for i in range(n):
        roll = rng.random()
        if roll < 0.06:
            opts = HandlerOpts(cookie=i, prog_setup_fn=Callback(0)) if i % 3 == 0 else None
            form = (b"", b"/", b"+")[i % 3]
            ops.append(Register(b"custom%d" % rng.randrange(24) + form, rng.randrange(32), 0,
                                opts))
            registers += 1
        elif roll < 0.09 and registers:
            handler = HandleRef(rng.randrange(registers)) if roll < 0.08 else rng.randrange(-2, 40)
            ops.append(Unregister(handler))
        elif roll < 0.65:
            ops.append(ProgTypeByName(rng.choice(names)))
        else:
            ops.append(AttachTypeByName(rng.choice(names)))
    return ops


def lifecycle_demo_ops(n: int, seed: int = 0) -> list[Op]:
    """About ``n`` ops of ``oracle.campaign.lifecycle_gen`` sequences, back to back."""
    from oracle.campaign.lifecycle_gen import LifecycleGenerator, concatenated

    generator = LifecycleGenerator(seed)
    sequences: list[list[Op]] = []
    total = 0
    while total < n:
        sequences.append(generator.sequence())
        total += len(sequences[-1])
    return concatenated(sequences)[:n]


def bench_replay(n: int = 200_000, *, version: str = "1.7.0", rounds: int = 3,
                 seed: int = 0, lifecycle: bool = False) -> float:
    """Median ops/s of ``replay`` on one trace of ``n`` ops with the oracle's answers
    (``lifecycle``: object lifecycle sequences instead of the lookup-heavy mix)."""
    ops = lifecycle_demo_ops(n, seed) if lifecycle else demo_ops(n, seed)
    answers = Oracle(version).run(ops)
    with tempfile.TemporaryDirectory(prefix="sec-oracle-bench-") as tmp:
        path = Path(tmp) / "bench.jsonl"
        records = [Record(op, a) for op, a in zip(ops, answers, strict=True)]
        write_trace(path, TraceHeader(LibbpfInfo(version), origin="bench", seed=seed), records)
        rates = []
        for _ in range(rounds):
            start = time.perf_counter()
            result = replay([path])
            rates.append(n / (time.perf_counter() - start))
            assert result.exit_code == 0, result
    return statistics.median(rates)


# ---------------------------------------------------------------------------
# command line


def as_version(model: str | Profile) -> str:
    return model if isinstance(model, str) else model.version


def _run(args: argparse.Namespace) -> int:
    model: str | Profile | None = args.version
    if args.source is not None:
        if args.version is not None:
            raise OracleError("give --version or --source, not both")
        from oracle.sourcetree import check_tree
        from oracle.tables.trees import tree_table

        model = profile_for(tree_table(check_tree(args.source.expanduser(),
                                                  f"--source {args.source}")))
    result = replay(args.paths, version=model, libbpf=args.libbpf, bpf=args.bpf,
                    allow_special=args.allow_special)
    for trace in result.traces:
        if args.json:
            print(json.dumps(trace.to_json()))
        else:
            print(text_report(trace))
    sys.stdout.flush()
    return result.exit_code


def text_report(trace: TraceResult) -> str:
    """A few lines per trace: a PASS/FAIL/ERROR line, then the differences."""
    if trace.status == "error":
        return f"ERROR {trace.error}"
    counts = f"{trace.ops} ops, {trace.checked} answers checked on {trace.target}"
    if trace.status == "conforms":
        return f"PASS {trace.path}: {counts} ({trace.ops_per_s:,.0f} ops/s)"
    lines = [f"FAIL {trace.path}: {trace.divergence_count} of {trace.checked} answers differ"
             f" ({counts})"]
    if trace.crash:
        lines.append(f"  {trace.crash}")
    lines += [f"  {describe(d)}" for d in trace.divergences]
    if trace.divergence_count > len(trace.divergences):
        lines.append(f"  ... and {trace.divergence_count - len(trace.divergences)} more")
    return "\n".join(lines)


def register(sub: Any) -> None:
    parser = sub.add_parser("replay", help="replay traces on the oracle (or a libbpf) and"
                            " report answers that differ")
    parser.add_argument("paths", metavar="PATH", nargs="+", help="trace files (.jsonl)")
    parser.add_argument("--version", default=None,
                        help="oracle release to replay on (default: each trace's header)")
    parser.add_argument("--source", type=Path, default=None, metavar="DIR",
                        help="replay on the model of this libbpf source tree (its own table)")
    parser.add_argument("--libbpf", metavar="TARGET", default=None,
                        help="replay on a real libbpf instead: system, VERSION[+asan|+fuzz]"
                        " or the path of a libbpf .so")
    parser.add_argument("--no-bpf", dest="bpf", action="store_false",
                        help="the oracle models a process without bpf(): load and attach"
                        " answer -ENOSYS (for traces recorded without bpf())")
    parser.add_argument("--json", action="store_true", help="one line of JSON per trace")
    parser.add_argument("--allow-special", action="store_true",
                        help="read FIFOs and devices too (e.g. /dev/stdin); by default a PATH"
                        " that is not a regular file is an error")
    parser.set_defaults(handler=_run)


__all__: Sequence[str] = [
    "ReplayResult", "TraceResult", "bench_replay", "describe", "record_line", "register",
    "replay",
]
