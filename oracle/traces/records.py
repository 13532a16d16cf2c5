"""The data of a trace: its header, its records, and the format's name and version.

Plain frozen dataclasses, no encoding: ``oracle.traces.kinds`` and
``oracle.traces.schema`` turn them into JSON, ``oracle.traces.files`` into files.
The reading limits (``MAX_LINE_BYTES``, ``MAX_DEPTH``, ``MAX_OBJECT_BYTES``)
are part of the format and live here, the one place they are defined.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from oracle.ops import Answer, Op

FORMAT: Final = "libbpf-sec-oracle/trace"
FORMAT_VERSION: Final = 1
VARIANTS: Final = ("plain", "asan", "fuzz", "system", "path")

# Reading limits: a reader refuses a trace past one of them (one line naming
# the file, the line and the limit) instead of spending unbounded memory or
# stack on it.  Every trace this tool writes is far inside them (the largest
# line of the shipped corpus is 8.5 KB, the deepest record 6 levels).
#: bytes in one line, its newline included (the header too)
MAX_LINE_BYTES: Final = 1 << 20
#: nesting of JSON arrays and objects in one line (the record itself is 1)
MAX_DEPTH: Final = 32
#: bytes of one ``open``'s object: raw ``{"hex": ..}`` bytes, or the ELF
#: ``oracle.bpfelf.build_object`` makes of a spec
MAX_OBJECT_BYTES: Final = 1 << 18


@dataclass(frozen=True, slots=True)
class LibbpfInfo:
    """Which libbpf a trace's answers come from (or are meant for)."""

    version: str
    variant: str = "plain"  # one of VARIANTS
    so_sha256: str | None = None
    path: str | None = None


def package_version() -> str:
    try:
        return importlib.metadata.version("libbpf-sec-oracle")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class TraceHeader:
    """Line 1 of a trace (see module docstring)."""

    libbpf: LibbpfInfo
    origin: str = "hand"
    seed: int | None = None
    oracle_version: str = field(default_factory=package_version)
    created: str = field(default_factory=now_iso)
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """One call: the op, libbpf's answer (None: not recorded) and its log lines."""

    op: Op
    answer: Answer | None = None
    log: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Trace:
    header: TraceHeader
    records: tuple[Record, ...]

    @property
    def ops(self) -> list[Op]:
        return [r.op for r in self.records]


def records_of(ops: Iterable[Op], answers: Iterable[Answer] | None = None) -> list[Record]:
    """Records pairing ``ops`` with ``answers`` (same length), or without answers."""
    ops = list(ops)
    if answers is None:
        return [Record(op) for op in ops]
    return [Record(op, a) for op, a in zip(ops, answers, strict=True)]
