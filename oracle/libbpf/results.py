"""What running one op on libbpf gives back, shared by the child and the parent.

``execute`` (``oracle.libbpf.child``) returns a ``RawResult``, the child sends
those over the wire, and ``to_result`` turns each into the ``OpResult`` that
``run_inprocess`` and ``Worker`` (``oracle.libbpf.worker``) hand to callers.

``OpResult`` and ``Answer`` are immutable, so equal raw results share one
``OpResult``: ``to_result`` keeps the last ``RESULT_CACHE_SIZE`` distinct ones
(most answers repeat: ``0``, ``-ENOENT``, a lookup's types), which costs a
dict probe instead of two frozen-dataclass constructions per op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

from oracle.libbpf.binding import LogLine
from oracle.ops import Answer, CallbackCall, OutValue

#: (rc, out, log, calls): what ``execute`` returns and the child sends back
RawResult: TypeAlias = tuple[
    int, tuple[OutValue, ...], tuple[LogLine, ...], tuple[CallbackCall, ...]
]


@dataclass(frozen=True, slots=True)
class OpResult:
    """libbpf's answer to one op (callback calls included), with the log lines it caused."""

    answer: Answer
    log: tuple[LogLine, ...] = ()


RESULT_CACHE_SIZE: Final = 4096
_results: dict[RawResult, OpResult] = {}


def to_result(raw: RawResult) -> OpResult:
    """An ``OpResult`` from ``execute``'s raw tuple (shared with equal ones, see above)."""
    result = _results.get(raw)
    if result is None:
        result = OpResult(Answer(raw[0], raw[1], raw[3]), raw[2])
        if len(_results) >= RESULT_CACHE_SIZE:
            _results.clear()
        _results[raw] = result
    return result

