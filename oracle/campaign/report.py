"""The campaign report: JSON (schema in the README) and JUnit XML for CI dashboards.

Rules:
- The JSON report has a format name and version; its fields never change
  meaning within a version.
- Both files are written atomically (``oracle.outputs``: temp file with the
  user's umask, rename), after the campaign: findings themselves are already
  on disk by then.  Their paths are checked first (``oracle.outputs``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from oracle.campaign.check import CheckConfig, JobStats, exit_status
from oracle.environment import Environment
from oracle.outputs import atomic_write

REPORT_FORMAT = "libbpf-sec-oracle/report"
REPORT_VERSION = 1


def report_data(env: Environment, config: CheckConfig, stats: JobStats) -> dict[str, Any]:
    target = env.target
    return {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "libbpf": {
            "target": target.spec,
            "path": str(target.path),
            "version": env.version,
            "variant": env.info.variant,
            "so_sha256": env.info.so_sha256,
            "table": env.profile.table.origin,
            "profile": env.profile.status,
            "tree": None if target.tree is None else str(target.tree),
            "source_sha256": target.source_sha256,
        },
        "seed": config.seed,
        "jobs": config.jobs,
        "cases": stats.cases,
        "ops": stats.ops,
        "seconds": round(stats.seconds, 3),
        "ops_per_s": round(stats.ops / stats.seconds, 1) if stats.seconds else 0.0,
        #: throughput before the first finding and after it was written (jobs == 1)
        "rates": stats.rates(),
        "findings": [f.as_report() for f in stats.findings.values()],
        #: known bugs this build answered as fixed (the model with the bug's fix held)
        "known_bugs_fixed": sorted(stats.fixed),
        "unexplained": sum(1 for f in stats.findings.values() if f.known is None),
        #: fresh cases with a known bug's cause, and how many of them conformed: a
        #: build that fixed the bug conforms on all of them
        "known_bug_causes": {bug: {"cases": cases, "conformed": held}
                             for bug, (cases, held) in sorted(stats.causes.items())},
        #: batches or cases dropped because the model cannot answer them
        "unmodelled": stats.unmodelled,
        #: chain failures that only followed a run-past id divergence (not findings)
        "consequences": stats.consequences,
        #: findings whose pattern chained cases steered around once they repeated
        "steered": list(stats.steered),
        #: the signal that ended the run before its budget ("SIGINT"), or null
        "interrupted": stats.interrupted,
        #: what went wrong without ending the run (a job process that died)
        "errors": list(stats.errors),
        "exit_status": exit_status(stats, config.strict),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def junit_xml(data: dict[str, Any]) -> str:
    """One test case per finding signature, plus one for the campaign as a whole."""
    findings = data["findings"]
    failing = [f for f in findings if f.get("confirmed", True) and f.get(
        "fails", f["known"] is None or data["exit_status"] == 1)]
    suite = ElementTree.Element(
        "testsuite", name=f"sec-oracle check {data['libbpf']['target']}",
        tests=str(len(findings) + 1), failures=str(len(failing)), time=str(data["seconds"]))
    campaign = ElementTree.SubElement(suite, "testcase", classname="sec-oracle.check",
                                      name="conformance", time=str(data["seconds"]))
    ElementTree.SubElement(campaign, "system-out").text = (
        f"{data['cases']} cases, {data['ops']} ops, {data['ops_per_s']} ops/s")
    problems = ([f"interrupted by {data['interrupted']}"] if data.get("interrupted") else []) + [
        *data.get("errors", []),
        *(f"{f['signature']}: {f['write_error']}" for f in findings if f.get("write_error"))]
    if problems:
        ElementTree.SubElement(campaign, "error", message=problems[0]).text = "\n".join(problems)
        suite.set("errors", str(1))
    for finding in findings:
        case = ElementTree.SubElement(suite, "testcase", classname="sec-oracle.finding",
                                      name=finding["signature"])
        if finding in failing:
            failure = ElementTree.SubElement(case, "failure", message=finding["summary"])
            failure.text = f"trace: {finding['trace']}\nreproducer: {finding['reproducer']}"
        else:
            why = (f"known: {finding['known']}" if finding["known"] else
                   finding.get("verdict") or "unconfirmed: not reproduced on a fresh state")
            ElementTree.SubElement(case, "skipped", message=why)
    return ElementTree.tostring(suite, encoding="unicode") + "\n"
