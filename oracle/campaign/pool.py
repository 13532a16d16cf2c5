"""``check --jobs N``: independent campaigns in processes of their own, merged.

Rules:
- Job ``j`` runs ``run_job(env, config_j, j)`` (seed ``seed + j``) in a spawned
  process; ``--cases N`` is split exactly (the first ``N % jobs`` jobs take one
  more).  Findings deduplicate on disk as they are written (``findings.write_finding``).
- A job sends a snapshot of its statistics about every ``SNAPSHOT_SECONDS``
  and its final ones when it ends; the parent merges the latest of each, so a
  job that dies (the OOM killer, a SIGKILL) loses at most its last seconds,
  and the run's report names it in ``errors`` instead of losing every job's
  results.
- A stop request in the parent (``oracle.stop``) is passed on to every job as
  SIGTERM (and SIGCONT); each winds down within one batch and sends its final
  snapshot.  A job still alive ``GRACE_SECONDS`` later is SIGKILLed.  When
  the time budget is spent, a job someone stopped (SIGSTOP) is continued, and
  one still alive ``DEADLINE_GRACE`` later is SIGKILLed: no job can hold the
  run forever.  Jobs die with the
  parent if it is killed outright (``stop.die_with_parent``), and every
  job's temp dir (its workers' files) is removed by the parent whatever
  became of the job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Final

from oracle import stop
from oracle.campaign.check import CheckConfig, JobStats, run_job
from oracle.environment import Environment
from oracle.exits import describe_exit

SNAPSHOT_SECONDS: Final = 1.0
GRACE_SECONDS: Final = 30.0
#: past the time budget, a job may still be shrinking a finding or building its ASan twin
DEADLINE_GRACE: Final = 300.0


def split_cases(cases: int | None, jobs: int, job: int) -> int | None:
    """Job ``job``'s share of ``cases`` (exact: the shares add up to ``cases``)."""
    if cases is None:
        return None
    return cases // jobs + (1 if job < cases % jobs else 0)


def _job_main(env: Environment, config: CheckConfig, job: int, conn: Connection,
              tmp: str) -> None:
    """A job process: run the campaign, sending snapshots (module rules)."""
    stop.die_with_parent(signal.SIGTERM)
    tempfile.tempdir = tmp  # its workers' files, removed by the parent
    last = [0.0]

    def snapshot(stats: JobStats) -> None:
        now = time.monotonic()
        if now - last[0] >= SNAPSHOT_SECONDS:
            last[0] = now
            conn.send(("progress", stats))

    with stop.handling_signals(), contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        stats = run_job(env, config, job, snapshot)
        conn.send(("done", stats))


@dataclasses.dataclass
class _Job:
    number: int
    process: Any  # multiprocessing's SpawnProcess
    conn: Connection
    tmp: Path
    stats: JobStats = dataclasses.field(default_factory=JobStats)
    done: bool = False
    ended: bool = False


def run_jobs(env: Environment, config: CheckConfig,
             progress: Callable[[JobStats], None] | None = None) -> JobStats:
    """``config.jobs`` campaigns at once, merged (module rules)."""
    context = get_context("spawn")
    jobs: list[_Job] = []
    try:
        for number in range(config.jobs):
            share = dataclasses.replace(config, cases=split_cases(config.cases, config.jobs,
                                                                  number))
            receive, send = context.Pipe(duplex=False)
            tmp = Path(tempfile.mkdtemp(prefix=f"sec-oracle-job{number}-"))
            process = context.Process(target=_job_main, args=(env, share, number, send,
                                                              str(tmp)))
            process.start()
            send.close()
            jobs.append(_Job(number, process, receive, tmp))
        deadline = None if config.seconds is None else time.monotonic() + config.seconds
        _collect(jobs, progress, deadline)
    finally:
        for job in jobs:
            if job.process.is_alive():
                job.process.kill()
            job.process.join()
            job.conn.close()
            shutil.rmtree(job.tmp, ignore_errors=True)
    merged = JobStats()
    for job in jobs:
        merged.merge(job.stats)
        if not job.done:
            merged.errors.append(f"job {job.number} (seed {config.seed + job.number})"
                                 f" {describe_exit(job.process.exitcode)}: its last"
                                 f" {SNAPSHOT_SECONDS:.0f} s of results are lost")
    return merged


def _signal_live(jobs: list[_Job], *signals: int) -> None:
    for job in jobs:
        for number in signals:
            if job.process.is_alive() and job.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(job.process.pid, number)


def _collect(jobs: list[_Job], progress: Callable[[JobStats], None] | None,
             deadline: float | None) -> None:
    """Receive snapshots until every job has ended; pass a stop request on; at the
    time budget's end continue any job someone stopped (SIGSTOP), and kill what is
    still alive ``DEADLINE_GRACE`` later."""
    passed_on: float | None = None
    continued = False
    while not all(job.ended for job in jobs):
        now = time.monotonic()
        if stop.requested() is not None and passed_on is None:
            passed_on = now
            _signal_live(jobs, signal.SIGTERM, signal.SIGCONT)
        if deadline is not None and now > deadline and not continued:
            continued = True
            _signal_live(jobs, signal.SIGCONT)
        if (passed_on is not None and now - passed_on > GRACE_SECONDS) or (
                deadline is not None and now > deadline + DEADLINE_GRACE):
            _signal_live(jobs, signal.SIGKILL)
        live = {id(job.conn): job for job in jobs if not job.ended}
        for ready in wait([job.conn for job in live.values()], timeout=0.5):
            job = live[id(ready)]
            try:
                kind, stats = job.conn.recv()
            except (EOFError, OSError):
                job.ended = True
                continue
            job.stats = stats
            job.done = kind == "done"
        if progress is not None:
            merged = JobStats()
            for job in jobs:
                merged.merge(job.stats)
            progress(merged)
