"""``sec-oracle bench fuzz``: one run, side by side, per harness: exec/s under libFuzzer,
inputs/s without it, and the C libFuzzer harness's exec/s (the physical limit).

Rules:
- For each harness of ``fuzz.cli.HARNESSES`` (``registry``, ``lifecycle``):
  ``libfuzzer``: ``sec-oracle fuzz H --libbpf T --time S`` in a child process
  (fresh corpus and artifacts in a temporary directory: the committed seeds),
  its report's ``libfuzzer.stats.exec_per_s`` (libFuzzer's last status line),
  its execs and their average over the run (``average_exec_per_s``: fork
  mode's start-up and merges included); ``replay``: ``fuzz/harness_registry.py --libbpf=T --replay
  SEEDS --repeat=N`` (no libFuzzer, the committed seeds N times), the
  ``inputs/s`` it prints.
- ``c``: ``fuzz/c/registry_fuzzer.c`` built against the same target
  (``fuzz.cfuzzer``, compile time not counted) and run ``S`` seconds on the
  committed seeds: libFuzzer's final ``average_exec_per_sec``.  It makes the
  registry harness's calls only, so the lifecycle row has no C figure.  No
  clang or no headers: ``None`` with the reason.
- The runs are sequential, in the order libfuzzer, replay per harness, then
  C; nothing here asserts a time.  Exec/s depends on the corpus libFuzzer
  grows during the run (input lengths), replay on the seeds only.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from fuzz import cfuzzer, checks
from fuzz.cli import HARNESS_SCRIPT, HARNESSES, SEEDS
from oracle.errors import OracleError

_RATE: Final = re.compile(r"(\d+) inputs/s")


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stderr.strip().splitlines() or done.stdout.strip().splitlines()
            or [f"exit {done.returncode}"])[-1]


def libfuzzer_rate(harness: str, libbpf: str, seconds: int, work: Path) -> dict[str, Any]:
    report = work / f"{harness}.json"
    argv = [sys.executable, "-m", "oracle", "fuzz", harness, "--libbpf", libbpf,
            "--time", str(seconds), "--report", str(report), "--corpus", str(work / harness),
            "--artifacts", str(work / f"{harness}-artifacts"),
            "--findings", str(work / f"{harness}-findings")]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False)
    if not report.is_file():
        raise OracleError(f"sec-oracle fuzz {harness} failed: {_last_line(done)}")
    data = json.loads(report.read_text())
    stats = data["libfuzzer"]["stats"] or {}
    execs, at = stats.get("execs"), stats.get("seconds")
    return {"exec_per_s": stats.get("exec_per_s"), "execs": execs,
            "average_exec_per_s": round(execs / at) if execs and at else None,
            "cov": stats.get("cov"), "exit_status": data["exit_status"]}


def replay_rate(harness: str, libbpf: str, repeat: int) -> dict[str, Any]:
    seeds = sorted(str(p) for p in SEEDS.iterdir())
    argv = [sys.executable, str(HARNESS_SCRIPT), f"--libbpf={libbpf}", *HARNESSES[harness],
            "--replay", f"--repeat={repeat}", *seeds]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False)
    match = _RATE.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise OracleError(f"replaying the seeds through the {harness} harness failed:"
                          f" {_last_line(done)}")
    return {"inputs_per_s": int(match[1]), "inputs": len(seeds) * repeat}


def c_rate(libbpf: str, seconds: int, work: Path) -> dict[str, Any]:
    from oracle.environment import model_for
    from oracle.libbpf.targets import probe, resolve

    target = resolve(libbpf)
    model = model_for(target, probe(target), None)
    try:
        fuzzer = cfuzzer.build(Path(target.path), checks.policy(model.version, target.variant),
                               work / "c")
    except OracleError as exc:
        return {"exec_per_s": None, "unavailable": str(exc)}
    corpus = work / "c-corpus"
    shutil.copytree(SEEDS, corpus)
    result = cfuzzer.run(fuzzer, corpus, seconds)
    return {"exec_per_s": result["exec_per_s"], "execs": result["execs"],
            "compile_s": round(fuzzer.compile_seconds, 2), "so": str(fuzzer.so)}


def bench_fuzz(libbpf: str = "1.7.0+fuzz", seconds: int = 10, repeat: int = 20) -> dict[str, Any]:
    """The figures of the module rules, in one run."""
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="sec-oracle-bench-fuzz-") as tmp:
        work = Path(tmp)
        for harness in sorted(HARNESSES, key=lambda h: h != "registry"):
            rows[harness] = {"libfuzzer": libfuzzer_rate(harness, libbpf, seconds, work),
                             "replay": replay_rate(harness, libbpf, repeat)}
        c = c_rate(libbpf, seconds, work)
    return {"bench": "fuzz", "target": libbpf, "seconds": seconds, "repeat": repeat,
            "seeds": len(list(SEEDS.iterdir())), "harnesses": rows, "c_registry": c}


def describe(result: dict[str, Any]) -> str:
    """``bench_fuzz`` 's result as a small table for humans."""
    def rate(value: int | None, unit: str) -> str:
        return "n/a" if value is None else f"{value:,} {unit}"

    c = result["c_registry"]
    lines = [f"fuzz bench: libbpf {result['target']}, libFuzzer runs of {result['seconds']} s,"
             f" replay of {result['seeds']} seeds x{result['repeat']}",
             f"  {'harness':<10} {'libFuzzer':>14} {'replay':>16} {'C libFuzzer':>14}"]
    for name, row in result["harnesses"].items():
        c_text = rate(c["exec_per_s"], "exec/s") if name == "registry" else "-"
        lines.append(f"  {name:<10} {rate(row['libfuzzer']['exec_per_s'], 'exec/s'):>14}"
                     f" {rate(row['replay']['inputs_per_s'], 'inputs/s'):>16} {c_text:>14}")
    if c["exec_per_s"] is None:
        lines.append(f"  C harness unavailable: {c['unavailable']}")
    return "\n".join(lines)
