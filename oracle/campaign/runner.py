"""Running one case on real libbpf and on the oracle, and naming what differs.

Rules:
- Every case starts from a fresh libbpf process state (the handler registry is
  process-global and the id counter never goes back), so a case's trace
  replays exactly on its own: ids start at 1 on both sides.
- The oracle answers every op; libbpf answers until it dies.  The outcome is
  the first divergence among the ops both answered, or the crash if libbpf
  died before any divergence (``CaseOutcome``).
- Signatures (``CaseOutcome.signature``) deduplicate findings:
  ``divergence:<op>:<field>:<expected>-><actual>`` (``compare.Divergence``) or
  ``<crash|hang|exit>:<sanitizer kind, signal or exit code>:<top libbpf frame>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from oracle.campaign.compare import Divergence, first_divergence, signal_name
from oracle.libbpf.worker import CrashEvent, OpResult, Worker
from oracle.model.oracle import Oracle
from oracle.ops import OP_NAMES, Answer, Op

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

    @property
    def failed(self) -> bool:
        return self.divergence is not None or self.crash is not None

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

    def __init__(self, worker: Worker, version: str) -> None:
        self.worker = worker
        self.version = version

    def run(self, ops: Sequence[Op]) -> CaseOutcome:
        ops = tuple(ops)
        expected = tuple(Oracle(self.version).run(ops))
        batch = self.worker.run_fresh(ops)
        answers = [r.answer for r in batch.results]
        divergence = first_divergence(list(ops), list(expected), answers)
        crash = batch.crash if divergence is None else None
        return CaseOutcome(ops, expected, batch.results, divergence, crash)

    def signature(self, ops: list[Op]) -> str | None:
        """The shrinker's predicate: this case's signature on a fresh process."""
        return self.run(ops).signature
