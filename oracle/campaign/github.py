"""``sec-oracle report github REPORT...``: ``check`` and ``fuzz`` reports (``--report``) as a
GitHub Actions step summary and annotations.

    sec-oracle report github REPORT... [--summary FILE]

Rules:
- Each REPORT is the JSON report of ``check`` (also ``check --baseline``) or
  ``fuzz`` (it has ``harness``): ``format`` ``libbpf-sec-oracle/report``, version
  ``REPORT_VERSION``.  Every report is read and checked before anything is
  written: an unreadable file, bad JSON, another format or version, or a field
  of the wrong type is one line on stderr, exit 2 (``OracleError``).
- The summary (Markdown, one section per report) is appended to ``--summary``,
  default ``$GITHUB_STEP_SUMMARY``; with neither it goes to stdout.
- Annotations are workflow commands on stdout: one ``::error`` per confirmed
  unexplained finding (``unexplained``: confirmed and not a known bug; in a
  baseline report, one whose verdict moves away from the model: ``fails``),
  one ``::warning`` per report error and for an interrupted run.  Values are
  escaped as the runner reads them (``%``, CR, LF; in properties also ``:`` ``,``).
- Exit 0 once written, whatever the reports found: the step that ran the
  campaign carries its exit status, and this one runs after it with
  ``if: always()``.
- Nothing here imports the campaign machinery: a report is only data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from oracle.errors import OracleError

REPORT_FORMAT: Final = "libbpf-sec-oracle/report"  # as oracle.campaign.report
REPORT_VERSION: Final = 1
SUMMARY_ENV: Final = "GITHUB_STEP_SUMMARY"


def load(path: Path) -> dict[str, Any]:
    """One report, checked as far as the summary reads it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OracleError(f"cannot read report {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OracleError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise OracleError(f"{path}: not a sec-oracle report (format {REPORT_FORMAT!r})")
    if data.get("format_version") != REPORT_VERSION:
        raise OracleError(f"{path}: report format version {data.get('format_version')!r},"
                          f" this sec-oracle reads {REPORT_VERSION}")
    libbpf, findings = data.get("libbpf"), data.get("findings")
    if not (isinstance(libbpf, dict) and isinstance(findings, list)
            and all(isinstance(f, dict) and isinstance(f.get("signature"), str)
                    for f in findings)
            and isinstance(data.get("errors", []), list)):
        raise OracleError(f"{path}: malformed report (libbpf, findings[].signature, errors)")
    return data


def unexplained(finding: dict[str, Any]) -> bool:
    """A confirmed finding that is not a known bug (a baseline report says ``fails``)."""
    if not finding.get("confirmed", True):
        return False
    if "fails" in finding:
        return bool(finding["fails"])
    return finding.get("known") is None


def title(data: dict[str, Any]) -> str:
    libbpf = data["libbpf"]
    what = f"fuzz {data['harness']}" if "harness" in data else (
        f"check --baseline {data['baseline'].get('target')}"
        if isinstance(data.get("baseline"), dict) else "check")
    return (f"sec-oracle {what}: libbpf {libbpf.get('target')}"
            f" ({libbpf.get('version')}, {libbpf.get('variant')})")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("\r", " ").replace("\n", " ").replace("|", "\\|")


def _code(value: object) -> str:
    text = _cell(value).replace("`", "'")
    return f"`{text}`" if text else ""


def summary(path: Path, data: dict[str, Any]) -> str:
    """The Markdown section of one report."""
    findings: list[dict[str, Any]] = data["findings"]
    bad = [f for f in findings if unexplained(f)]
    status = data.get("exit_status")
    verdict = (f"{len(bad)} unexplained finding(s)" if bad else
               f"{len(findings)} finding(s), none unexplained" if findings else "no findings")
    lines = [f"### {_cell(title(data))}", "",
             f"**{verdict}**; exit status {status} (`{_cell(path)}`)", ""]
    if "harness" in data:
        stats = (data.get("libfuzzer") or {}).get("stats") or {}
        triaged = data.get("triage") or []
        lines += ["| execs | cov | ft | corpus | exec/s | seconds | artifacts |",
                  "|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {stats.get('execs', data.get('cases'))} | {stats.get('cov', '')}"
                  f" | {stats.get('ft', '')} | {stats.get('corpus', '')}"
                  f" | {stats.get('exec_per_s', '')} | {data.get('seconds')}"
                  f" | {len(triaged)} |", ""]
    else:
        lines += ["| cases | ops | ops/s | seconds | jobs | seed |",
                  "|---:|---:|---:|---:|---:|---:|",
                  f"| {data.get('cases')} | {data.get('ops')} | {data.get('ops_per_s')}"
                  f" | {data.get('seconds')} | {data.get('jobs')} | {data.get('seed')} |", ""]
    if findings:
        lines += ["| | signature | summary | known | count | reproducer |",
                  "|---|---|---|---|---:|---|"]
        for f in findings:
            mark = ("unexplained" if unexplained(f) else
                    "unconfirmed" if not f.get("confirmed", True) else
                    _cell(f.get("verdict")) or "known")
            lines.append(f"| {mark} | {_code(f['signature'])} | {_cell(f.get('summary'))}"
                         f" | {_cell(f.get('known')) or '-'} | {_cell(f.get('count'))}"
                         f" | {_code(f.get('reproducer') or f.get('write_error'))} |")
        lines.append("")
    fixed = data.get("known_bugs_fixed") or []
    if fixed:
        lines += [f"Known bugs this build answers as fixed: {_cell(', '.join(map(str, fixed)))}",
                  ""]
    for problem in problems(data):
        lines.append(f"- :warning: {_cell(problem)}")
    return "\n".join(lines).rstrip("\n") + "\n\n"


def problems(data: dict[str, Any]) -> list[str]:
    out = [f"interrupted by {data['interrupted']}: the report covers the run so far"
           ] if data.get("interrupted") else []
    return out + [str(e) for e in data.get("errors", [])]


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(kind: str, message: str, **properties: str) -> str:
    """One workflow command line (``::error title=...::message``)."""
    props = ",".join(f"{k}={_escape_property(v)}" for k, v in properties.items())
    return f"::{kind}{' ' + props if props else ''}::{_escape_data(message)}"


def workflow_commands(data: dict[str, Any]) -> Iterable[str]:
    head = title(data)
    for f in data["findings"]:
        if unexplained(f):
            where = f.get("reproducer") or f.get("trace") or f.get("write_error") or ""
            yield command("error", f"{f.get('summary') or f['signature']}"
                          f"{' (' + str(where) + ')' if where else ''}",
                          title=f"{head}: {f['signature']}")
    for problem in problems(data):
        yield command("warning", problem, title=head)


def run(args: argparse.Namespace) -> int:
    reports = [(path, load(path)) for path in args.reports]  # all checked first
    text = "".join(summary(path, data) for path, data in reports)
    target: Path | None = args.summary
    if target is None and os.environ.get(SUMMARY_ENV):
        target = Path(os.environ[SUMMARY_ENV])
    lines = [line for _, data in reports for line in workflow_commands(data)]
    if target is None:
        sys.stdout.write(text)
    else:
        try:
            with open(target, "a", encoding="utf-8") as sink:
                sink.write(text)
        except OSError as exc:
            raise OracleError(f"cannot write the step summary {target}: {exc}") from None
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()
    return 0


def register(sub: Any) -> None:
    """Add the ``report`` group with ``github``."""
    group = sub.add_parser("report", help="reports of check and fuzz, for CI")
    commands = group.add_subparsers(dest="report_command", required=True)
    github = commands.add_parser(
        "github", help="step summary ($GITHUB_STEP_SUMMARY) and ::error annotations")
    github.add_argument("reports", nargs="+", type=Path, metavar="REPORT",
                        help="JSON reports of check or fuzz (--report)")
    github.add_argument("--summary", type=Path, default=None, metavar="FILE",
                        help=f"append the Markdown summary here (default ${SUMMARY_ENV},"
                        " else stdout)")
    github.set_defaults(handler=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m oracle.campaign.github REPORT...``: the same as the subcommand."""
    from oracle.cli import main as cli_main

    return cli_main(["report", "github", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
