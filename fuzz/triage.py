"""Triage libFuzzer's crash files: reproduce, deduplicate, shrink, classify, write findings.

    python -m fuzz.triage --libbpf TARGET CRASH_FILES... --findings DIR
        [--lifecycle] [--allow-known] [--shrink-tries N] [--timeout S]

Pass the same ``--lifecycle``/``--allow-known`` as the harness run that made
the files: they decide how bytes decode and which ops the harness ran.

Rules:
- Each file (``crash-*``, ``timeout-*``, ``leak-*``, ``oom-*`` or any input) is
  decoded with ``fuzz.decode`` and turned into the case the harness ran
  (``fuzz.checks.fresh_case``: the admissible ops, behind the anchor when the
  release needs one), then re-run on the crash-isolated path:
  ``Differential(Worker(target))``, a fresh libbpf process state per case,
  real answers and sanitizer reports.  Divergences that need the harness's
  absolute handler ids do not reproduce there and are reported as such.
- Findings are deduplicated by signature (``CaseOutcome.signature``); the
  first file of a signature is shrunk and confirmed on a fresh state
  (``Differential.minimise``), classified (``oracle.campaign.known.explain``: known bug or new)
  and written with ``oracle.campaign.findings.keep_finding`` (finding.json,
  trace.jsonl, repro.c, summary.md).  Later files of the signature only count.
- Exit status: 1 if a new (unknown) finding was written or already there, else 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fuzz import checks
from fuzz.decode import decode
from oracle.campaign.check import CheckConfig, prepare
from oracle.campaign.findings import Finding, keep_finding
from oracle.campaign.known import explain
from oracle.campaign.runner import CaseOutcome, Differential
from oracle.environment import Environment
from oracle.errors import OracleError
from oracle.libbpf.worker import Worker
from oracle.model.objects import NotModelledError


@dataclass
class Row:
    file: str
    result: str  # "new", "known", "duplicate", "not reproduced", "not modelled", "empty"
    signature: str = ""
    known: str = ""
    directory: str = ""
    finding: Finding | None = None  # the first file of a signature: its finding


def file_kind(path: Path) -> str:
    prefix = path.name.split("-", 1)[0]
    return prefix if prefix in ("crash", "timeout", "leak", "oom", "slow") else "input"


def make_finding(differential: Differential, outcome: CaseOutcome, env: Environment,
                 findings: Path, shrink_tries: int) -> Finding:
    """Shrink, confirm on a fresh state, classify and write one finding (one that
    cannot be written keeps the reason: ``findings.keep_finding``)."""
    signature = outcome.signature
    assert signature is not None
    confirmed = differential.minimise(outcome, shrink_tries)
    finding = Finding(signature, confirmed.kind, confirmed.summary(), confirmed,
                      known=explain(env.version, signature, list(confirmed.ops)))
    keep_finding(findings, finding, env.info, None, env.target)
    return finding


def triage(files: Sequence[Path], *, libbpf: str, findings: Path, lifecycle: bool = False,
           allow_known: bool = False, shrink_tries: int = 600,
           timeout: float = 10.0) -> list[Row]:
    env = prepare(CheckConfig(libbpf=libbpf, findings=findings))
    pol = checks.policy(env.version, env.target.variant, allow_known=allow_known)
    seen: dict[str, Finding] = {}
    rows: list[Row] = []
    with Worker(env.target, timeout=timeout) as worker:
        differential = Differential(worker, env.profile, bpf=env.bpf)
        for path in files:
            name = f"{path.name} ({file_kind(path)})"
            ops = checks.fresh_case(decode(path.read_bytes(), lifecycle=lifecycle), pol)
            if not ops:
                rows.append(Row(name, "empty"))
                continue
            try:
                outcome = differential.run(ops)
            except NotModelledError:
                rows.append(Row(name, "not modelled"))
                continue
            signature = outcome.signature
            if signature is None:
                rows.append(Row(name, "not reproduced"))
                continue
            if signature in seen:
                seen[signature].count += 1
                first = seen[signature]
                rows.append(Row(name, "duplicate", signature, first.known.id if first.known
                                else "", str(first.directory or "")))
                continue
            finding = make_finding(differential, outcome, env, findings, shrink_tries)
            seen[signature] = finding
            rows.append(Row(name, "known" if finding.known else "new", signature,
                            finding.known.id if finding.known else "",
                            str(finding.directory or ""), finding))
    return rows


def table(rows: Sequence[Row]) -> str:
    header = ("file", "result", "known", "signature", "finding")
    cells = [header, *((r.file, r.result, r.known or "-", r.signature or "-", r.directory or "-")
                       for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(c[i].ljust(widths[i]) for i in range(len(widths))), c[-1]])
                     .rstrip() for c in cells)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.triage",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--libbpf", required=True, metavar="TARGET")
    parser.add_argument("--findings", type=Path, default=Path("findings"), metavar="DIR")
    parser.add_argument("--lifecycle", action="store_true")
    parser.add_argument("--allow-known", action="store_true")
    parser.add_argument("--shrink-tries", type=int, default=600)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("files", nargs="+", type=Path, metavar="CRASH_FILE")
    args = parser.parse_args(argv)
    try:
        rows = triage(args.files, libbpf=args.libbpf, findings=args.findings,
                      lifecycle=args.lifecycle, allow_known=args.allow_known,
                      shrink_tries=args.shrink_tries, timeout=args.timeout)
    except (OracleError, OSError) as exc:
        print(f"triage: {exc}", file=sys.stderr)
        return 2
    print(table(rows))
    return 1 if any(r.result == "new" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
