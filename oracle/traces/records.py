"""The data of a trace: its header, its records, and the format's name and version.

Plain frozen dataclasses, no encoding: ``oracle.traces.kinds`` and
``oracle.traces.schema`` turn them into JSON, ``oracle.traces.files`` into files.
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
