"""``sec-oracle bench campaign``: a campaign's ops/s beside the same ops run by this
project's Python executor and by a C program, in one run.

Rules:
- The campaign side is ``check.run_job`` for a fixed number of cases and a
  fixed seed: generation, the oracle, the worker, comparison and the fresh
  case per batch, everything a real run does.
- The op stream both executors run is the campaign's chained stream
  (``chained_ops``): the same cases rebased and followed by their cleanup ops,
  exactly what the campaign's chain sends, as one chain.
- "Python executor": the stream through ``child.run_inprocess`` (the cffi
  binding and op dispatch the worker's copies run) in a child process started
  with the target's environment, libbpf's log off (as the chained worker runs
  it), the loaded stream frozen out of the garbage collector (as the chain
  copy's inherited heap is): no oracle, no comparison, no process isolation.  It is this project's
  own executor, not libbpf's limit.
- "C": the stream as a C program, ``oracle.repro_c.emit_c`` of a trace without
  answers (repro.c's calls-only mode: each op's libbpf calls, no check, no
  output), compiled once before the rounds (``clang`` if there, else ``cc``;
  ``-O0``: the code between calls is trivial) with ``-Dmain=sec_oracle_ops``
  and a driver (``DRIVER``) that sets libbpf's print hook to NULL and reads
  ``CLOCK_MONOTONIC`` just around ``sec_oracle_ops()``: compiling, process
  start, dynamic linking and libbpf's constructors are not timed.  It links the
  target's ``.so`` (rpath and ``LD_LIBRARY_PATH`` its directory), runs with the
  target's environment, and reports the file its calls resolved to
  (``dladdr``), which must be the target's.  Headers: the system's
  ``<bpf/libbpf.h>`` (the calls and the 40-byte opts are the same in every
  1.x).  No compiler or no headers: the C column is ``None``, with the reason.
- Both executors end by registering one more handler and report its id: they
  must agree (they made the same registrations with the same results), else
  the benchmark fails.
- The cases avoid documented libbpf bugs (``avoid_known``): a crash would end
  an executor early and make the sides run different ops.
- Every executor runs in a fresh process per round (handler ids from 1).  The
  three are run ``rounds`` times, interleaved (C, Python executor, campaign),
  and the medians compared: ``ratio_to_c`` and ``ratio_to_python_executor``
  are campaign ops/s over each.  Nothing asserts a time.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from oracle import ccompile
from oracle.campaign.check import CheckConfig, MixedCases, needs_anchor, run_job
from oracle.campaign.runner import Chain
from oracle.environment import Environment
from oracle.errors import OracleError
from oracle.libbpf.child import run_inprocess
from oracle.libbpf.worker import TargetLike, Worker, child_env
from oracle.ops import Op, Register
from oracle.repro_c import emit_c
from oracle.traces import LibbpfInfo, Trace, TraceHeader, records_of

#: what each executor registers after the stream: its id says where the registry ended
END_PROBE: Final = Register(b"sec_oracle_bench_end", 1, 0)
#: the C column's main: times the ops only (see module rules)
DRIVER: Final = r"""#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>
#include <bpf/libbpf.h>

int sec_oracle_ops(void);	/* the generated program's main, renamed */

int main(void)
{
	struct timespec start, end;
	Dl_info where;
	int next_id;

	libbpf_set_print(NULL);	/* libbpf's log off, as the chained worker runs it */
	clock_gettime(CLOCK_MONOTONIC, &start);
	sec_oracle_ops();
	clock_gettime(CLOCK_MONOTONIC, &end);
	next_id = libbpf_register_prog_handler("sec_oracle_bench_end", 1, 0, NULL);
	if (!dladdr((void *)libbpf_prog_type_by_name, &where) || !where.dli_fname)
		where.dli_fname = "?";
	printf("{\"seconds\": %.9f, \"next_id\": %d, \"so\": \"%s\"}\n",
		(double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9,
		next_id, where.dli_fname);
	return 0;
}
"""


def chained_ops(env: Environment, config: CheckConfig, cases: int) -> list[Op]:
    """The op stream a campaign's chain sends for ``cases`` cases of ``config.seed``."""
    mixed = MixedCases(env, config, config.seed)
    with Worker(env.target) as idle:  # never started: the plan needs the oracle only
        chain = Chain(idle, env.profile, anchor=needs_anchor(env.version), bpf=env.bpf)
        return chain.plan([mixed.next() for _ in range(cases)]).ops


# ---------------------------------------------------------------------------
# the Python executor


def time_inprocess(path: str, ops_file: str, batch: int) -> dict[str, float]:
    """Seconds for the pickled ops through ``run_inprocess``, and the id ``END_PROBE`` got."""
    from oracle.libbpf.binding import Libbpf
    from oracle.libbpf.child import Session

    ops: list[Op] = pickle.loads(Path(ops_file).read_bytes())
    gc.freeze()  # the stream is not scanned by collections, as a chain copy's heap is not
    session = Session(Libbpf(path, log=False))  # as the campaign's chained worker runs it
    start = time.perf_counter()
    for i in range(0, len(ops), batch):
        run_inprocess(session, ops[i : i + batch])
    seconds = time.perf_counter() - start
    next_id = run_inprocess(session, [END_PROBE])[0].answer.rc
    return {"seconds": seconds, "next_id": next_id}


def run_python(target: TargetLike, ops_file: Path, batch: int) -> dict[str, Any]:
    """One timed run of the Python executor, in a fresh process: ``{"seconds", "next_id"}``."""
    argv = [sys.executable, "-m", "oracle.campaign.bench", "inprocess", str(target.path),
            str(ops_file), str(batch)]
    done = subprocess.run(argv, env=child_env(target), capture_output=True, text=True,
                          check=False)
    return _last_json(done, "Python executor")


def _last_json(done: subprocess.CompletedProcess[str], what: str) -> dict[str, Any]:
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise OracleError(f"the {what} failed on the benchmark's ops ({last})")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------------
# the C column


@dataclass(frozen=True)
class CProgram:
    """The stream as a compiled C program (see module rules)."""

    binary: Path
    compiler: str
    compile_seconds: float
    source_bytes: int


def c_source(ops: list[Op], version: str) -> str:
    """The stream as repro.c's calls-only program: a trace without answers."""
    header = TraceHeader(LibbpfInfo(version), origin="bench")
    return emit_c(Trace(header, tuple(records_of(ops))), title="sec-oracle bench campaign: C",
                  summary="The campaign's chained op stream, the calls only; its main is"
                          " renamed and timed by the benchmark's driver.")


def build_c(target: TargetLike, ops: list[Op], version: str, directory: Path) -> CProgram:
    """Compile the stream and the driver against ``target`` 's .so (not timed)."""
    compiler = ccompile.require()
    ccompile.require_libbpf_h()
    source = c_source(ops, version)
    (directory / "ops.c").write_text(source)
    (directory / "driver.c").write_text(DRIVER)
    so = Path(target.path).resolve()
    binary = directory / "ops"
    start = time.perf_counter()
    for argv in (
        [compiler, "-O0", "-Wall", "-Dmain=sec_oracle_ops", "-c", "ops.c", "-o", "ops.o"],
        [compiler, "-O0", "-Wall", "-c", "driver.c", "-o", "driver.o"],
        [compiler, "-o", str(binary), "driver.o", "ops.o", str(so),
         f"-Wl,-rpath,{so.parent}", "-ldl"],
    ):
        ccompile.compile_c(argv, f"compiling the C column ({' '.join(argv[:2])})", cwd=directory)
    return CProgram(binary, compiler, time.perf_counter() - start, len(source))


def run_c(program: CProgram, target: TargetLike) -> dict[str, Any]:
    """One timed run of the C column: ``{"seconds", "next_id", "so"}``."""
    env = child_env(target)
    so_dir = str(Path(target.path).resolve().parent)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (so_dir, env.get("LD_LIBRARY_PATH")) if p)
    done = subprocess.run([str(program.binary)], env=env, capture_output=True, text=True,
                          check=False)
    result = _last_json(done, "C program")
    if Path(result["so"]).resolve() != Path(target.path).resolve():
        raise OracleError(f"the C program called {result['so']}, not {target.path}")
    return result


# ---------------------------------------------------------------------------
# the benchmark


def bench_campaign(env: Environment, cases: int = 3000, rounds: int = 3, seed: int = 0,
                   batch: int = CheckConfig.batch) -> dict[str, Any]:
    """Campaign vs the Python executor vs C (see module rules), ``check`` 's batch size."""
    config = CheckConfig(libbpf=env.target.spec, seconds=None, cases=cases, seed=seed,
                         findings=Path(tempfile.mkdtemp(prefix="sec-oracle-bench-")),
                         batch=batch, avoid_known=True)
    ops = chained_ops(env, config, cases)
    count = len(ops)
    rates: dict[str, list[float]] = {"c": [], "python_executor": [], "campaign": []}
    next_ids: set[int] = set()
    with tempfile.TemporaryDirectory(prefix="sec-oracle-bench-c-") as tmp:
        directory = Path(tmp)
        program: CProgram | None = None
        c_unavailable: str | None = None
        try:
            program = build_c(env.target, ops, env.version, directory)
        except OracleError as exc:
            c_unavailable = str(exc)
        ops_file = directory / "ops.pickle"
        ops_file.write_bytes(pickle.dumps(ops))
        del ops  # not kept alive through the campaign rounds (its garbage collections)
        for _ in range(rounds):
            if program is not None:
                c = run_c(program, env.target)
                rates["c"].append(count / c["seconds"])
                next_ids.add(c["next_id"])
            py = run_python(env.target, ops_file, batch * 16)
            rates["python_executor"].append(count / py["seconds"])
            next_ids.add(int(py["next_id"]))
            stats = run_job(env, config, 0)
            rates["campaign"].append(stats.ops / stats.seconds)
    if len(next_ids) != 1:
        raise OracleError(f"the executors' registries ended apart (next handler ids"
                          f" {sorted(next_ids)}): they did not run the same ops")
    median = {k: statistics.median(v) if v else None for k, v in rates.items()}
    campaign, python, c_rate = median["campaign"], median["python_executor"], median["c"]
    assert campaign is not None and python is not None
    return {
        "bench": "campaign",
        "target": env.target.spec,
        "version": env.version,
        "cases": cases,
        "rounds": rounds,
        "chained_ops": count,
        "campaign_ops_per_s": round(campaign),
        "python_executor_ops_per_s": round(python),
        "c_ops_per_s": None if c_rate is None else round(c_rate),
        "ratio_to_python_executor": round(campaign / python, 3),
        "ratio_to_c": None if c_rate is None else round(campaign / c_rate, 3),
        "c": ({"unavailable": c_unavailable} if program is None else
              {"compiler": program.compiler, "compile_s": round(program.compile_seconds, 2),
               "source_bytes": program.source_bytes,
               "timed": "the ops only: CLOCK_MONOTONIC around the generated calls"}),
        "next_handler_id": next_ids.pop(),
    }


def describe(result: dict[str, Any]) -> str:
    """``bench_campaign`` 's result as a small table for humans."""
    def rate(value: int | None) -> str:
        return "n/a" if value is None else f"{value:,} ops/s"

    c_note = (result["c"].get("unavailable") if result["c_ops_per_s"] is None
              else f"generated C program ({result['c']['compiler']} -O0), ops timed in it")
    ratio_c = "n/a" if result["ratio_to_c"] is None else f"{result['ratio_to_c']:.2f}"
    return "\n".join([
        f"campaign bench: libbpf {result['target']} (model {result['version']}),"
        f" {result['chained_ops']:,} chained ops, median of {result['rounds']} rounds",
        f"  {'C':<16} {rate(result['c_ops_per_s']):>15}   {c_note}",
        f"  {'Python executor':<16} {rate(result['python_executor_ops_per_s']):>15}"
        "   this project's cffi executor, in-process",
        f"  {'campaign':<16} {rate(result['campaign_ops_per_s']):>15}"
        f"   {ratio_c} of C, {result['ratio_to_python_executor']:.2f} of the Python executor",
    ])


if __name__ == "__main__":
    if sys.argv[1] == "inprocess":
        print(json.dumps(time_inprocess(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
