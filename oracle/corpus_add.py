"""``sec-oracle corpus add``: a confirmed finding becomes a regression case and a fuzz seed.

    sec-oracle corpus add FINDING_DIR... [--traces DIR] [--seeds DIR] [--force]

Rules:
- A finding's ``trace.jsonl`` holds libbpf's (buggy) answers; the regression
  case holds the *model's* answers to the same ops (what a fixed libbpf
  gives), computed here on a fresh ``Oracle`` of the trace's release (header
  ``libbpf.version``, bpf() available, as ``replay`` runs it).  So ``sec-oracle
  replay`` of the case passes on the oracle (CI replays every case:
  tests/unit/test_corpus.py) and ``sec-oracle replay --libbpf T`` of it fails
  on a build that still has the bug and passes on one that fixed it.  Its
  header says ``origin: regression`` and names the finding's signature and
  the libbpf it was found on; log lines are not kept.
- The case goes to ``--traces`` (default ``oracle.shipped.REGRESSIONS``,
  ``corpus/traces/regressions/``) as ``<slug>.jsonl``, ``<slug>`` being the
  finding's (``findings.slug(signature)``): one case per kind of bug.  An
  existing case is kept, never rewritten.
- The ops become a fuzzer seed (``fuzz.decode.encode_seed``) under ``--seeds``
  (default ``oracle.shipped.REGRESSION_SEEDS``, ``corpus/fuzz-regressions/``,
  outside ``corpus/fuzz/`` so ``python -m fuzz.gen_corpus --check`` stays
  exact): ``registry/<slug>`` when the registry decoder reproduces them,
  else ``lifecycle/<slug>`` when the lifecycle decoder does, else no seed and
  the reason is printed (e.g. a registry change under an open object, which
  the lifecycle decoder rules out).  ``sec-oracle fuzz HARNESS`` adds
  ``<seeds>/HARNESS/`` to its working corpus.
- Every FINDING_DIR is checked before anything is written: not a finding
  directory (no ``finding.json`` or ``trace.jsonl``, unreadable), a finding
  not ``confirmed`` (unless ``--force``), a release without a model, ops the
  model cannot answer: one line on stderr, exit 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oracle.errors import OracleError
from oracle.model.oracle import Oracle
from oracle.ops import Answer, Op
from oracle.shipped import REGRESSION_SEEDS, REGRESSIONS
from oracle.traces import LibbpfInfo, Record, TraceHeader, read_trace, write_trace

#: seed subdirectory (a ``sec-oracle fuzz`` harness) -> decoder mode, tried in this order
SEED_HARNESSES: tuple[tuple[str, bool], ...] = (("registry", False), ("lifecycle", True))


@dataclass(frozen=True)
class Case:
    """A finding read and answered by the model, ready to write."""

    directory: Path
    slug: str
    signature: str
    ops: tuple[Op, ...]
    expected: tuple[Answer, ...]
    differing: int  # answers of the finding's trace the model does not give
    header: TraceHeader


def _finding_json(directory: Path) -> dict[str, Any]:
    path = directory / "finding.json"
    if not directory.is_dir() or not path.is_file() or not (directory / "trace.jsonl").is_file():
        raise OracleError(f"{directory}: not a finding directory (needs finding.json and"
                          " trace.jsonl)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise OracleError(f"{path}: unreadable: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("signature"), str):
        raise OracleError(f"{path}: not a finding (no signature)")
    return data


def read_case(directory: Path, *, force: bool = False) -> Case:
    """The regression case of the finding in ``directory`` (see module rules)."""
    from oracle.campaign.findings import slug

    data = _finding_json(directory)
    signature: str = data["signature"]
    if data.get("confirmed") is not True and not force:
        raise OracleError(f"{directory}: finding {signature} is not confirmed (it did not fail"
                          " again on a fresh state); --force adds it anyway")
    trace = read_trace(directory / "trace.jsonl")
    if not trace.records:
        raise OracleError(f"{directory}: trace.jsonl holds no ops")
    version = trace.header.libbpf.version
    try:
        oracle = Oracle(version)
    except OracleError as exc:
        raise OracleError(f"{directory}: no model of libbpf {version}: {exc}") from None
    expected = []
    for i, op in enumerate(trace.ops):
        try:
            expected.append(oracle.apply(op))
        except OracleError as exc:
            raise OracleError(f"{directory}: the model cannot answer op {i}: {exc}") from None
    differing = sum(r.answer is not None and r.answer != want
                    for r, want in zip(trace.records, expected, strict=True))
    found = trace.header.libbpf
    seed = data.get("seed")
    header = TraceHeader(
        libbpf=LibbpfInfo(version=version), origin="regression",
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        note=f"{signature}: the model's answers (a fixed libbpf's); found on libbpf"
             f" {found.version} ({found.variant}) sha256 {found.so_sha256 or 'unknown'}")
    return Case(directory, slug(signature), signature, tuple(trace.ops), tuple(expected),
                differing, header)


def seed_of(ops: Sequence[Op]) -> tuple[str, bytes] | str:
    """(harness, seed bytes), or why no decoder produces ``ops``."""
    from fuzz.decode import encode_seed

    reasons = []
    for harness, lifecycle in SEED_HARNESSES:
        try:
            return harness, encode_seed(ops, lifecycle=lifecycle)
        except ValueError as exc:
            reasons.append(f"{harness}: {exc}")
    return "; ".join(reasons)


def add_case(case: Case, traces: Path, seeds: Path) -> list[str]:
    """Write ``case``'s trace and seed; one line per thing done, for the user."""
    lines = []
    path = traces / f"{case.slug}.jsonl"
    if path.exists():
        lines.append(f"kept {path} (already there)")
    else:
        try:
            traces.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OracleError(f"cannot create {traces}: {exc.strerror}") from None
        write_trace(path, case.header, [Record(op, a) for op, a in zip(case.ops, case.expected,
                                                                       strict=True)])
        lines.append(f"added {path}: {len(case.ops)} ops with the model's answers"
                     f" ({case.differing} differ from libbpf's in the finding)")
    seed = seed_of(case.ops)
    if isinstance(seed, str):
        lines.append(f"no seed for {case.slug}: {seed}")
        return lines
    harness, data = seed
    target = seeds / harness / case.slug
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            lines.append(f"kept {target} (already there)")
        else:
            target.write_bytes(data)
            lines.append(f"added {target}: a {harness} seed ({len(data)} bytes)")
    except OSError as exc:
        raise OracleError(f"cannot write {target}: {exc.strerror}") from None
    return lines


def _add(args: argparse.Namespace) -> int:
    cases = [read_case(d, force=args.force) for d in args.findings]  # all checked first
    for case in cases:
        for line in add_case(case, args.traces, args.seeds):
            print(line)
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("corpus", help="the shipped corpus: add findings as regressions")
    corpus = parser.add_subparsers(dest="corpus_command", required=True,
                                   parser_class=type(parser))
    add = corpus.add_parser("add", help="a confirmed finding becomes a regression trace (the"
                            " model's answers) and a fuzz seed")
    add.add_argument("findings", metavar="FINDING_DIR", nargs="+", type=Path,
                     help="findings/<slug>/ directories written by check, fuzz or triage")
    add.add_argument("--traces", type=Path, default=REGRESSIONS, metavar="DIR",
                     help=f"regression traces (default {REGRESSIONS})")
    add.add_argument("--seeds", type=Path, default=REGRESSION_SEEDS, metavar="DIR",
                     help=f"regression fuzz seeds, DIR/HARNESS/<slug> (default {REGRESSION_SEEDS})")
    add.add_argument("--force", action="store_true",
                     help="add a finding that was not confirmed on a fresh state")
    add.set_defaults(handler=_add)


__all__: Sequence[str] = ["Case", "add_case", "read_case", "register", "seed_of"]
