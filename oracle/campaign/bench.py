"""``sec-oracle bench campaign``: a campaign's throughput against libbpf alone, in one run.

Rules:
- The campaign side is ``check.run_job`` for a fixed number of cases and a
  fixed seed: generation, the oracle, the worker, comparison and the fresh
  case per batch, everything a real run does.
- The libbpf-alone side is the same chained op stream (the cases rebased and
  followed by their cleanup ops, exactly what the campaign's worker runs)
  executed by ``child.run_inprocess`` in a child process started with the
  target's environment: no oracle, no comparison, no process isolation, and
  libbpf's log off on both sides (the chained worker runs ``log=False``).
- The cases avoid documented libbpf bugs (``avoid_known``): a crash would end
  the libbpf-alone side and make the two sides run different ops.
- Both are run ``rounds`` times, interleaved, and the medians compared:
  ``ratio = campaign ops/s / libbpf-alone ops/s``.  Nothing asserts a time.
"""

from __future__ import annotations

import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from oracle.campaign.check import CheckConfig, MixedCases, needs_anchor, run_job
from oracle.campaign.runner import Chain
from oracle.environment import Environment
from oracle.errors import OracleError
from oracle.libbpf.child import run_inprocess
from oracle.libbpf.worker import Worker, child_env
from oracle.ops import Op


def chained_ops(env: Environment, config: CheckConfig, cases: int) -> list[Op]:
    """The op stream a campaign's chain sends for ``cases`` cases of ``config.seed``."""
    mixed = MixedCases(env, config, config.seed)
    with Worker(env.target) as idle:  # never started: the plan needs the oracle only
        chain = Chain(idle, env.profile, anchor=needs_anchor(env.version), bpf=env.bpf)
        return chain.plan([mixed.next() for _ in range(cases)]).ops


def time_inprocess(path: str, ops_file: str, batch: int) -> float:
    from oracle.libbpf.binding import Libbpf
    from oracle.libbpf.child import Session

    ops: list[Op] = pickle.loads(Path(ops_file).read_bytes())
    session = Session(Libbpf(path, log=False))  # as the campaign's chained worker runs it
    start = time.perf_counter()
    for i in range(0, len(ops), batch):
        run_inprocess(session, ops[i : i + batch])
    return time.perf_counter() - start


def bench_campaign(env: Environment, cases: int = 3000, rounds: int = 3, seed: int = 0,
                   batch: int = CheckConfig.batch) -> dict[str, Any]:
    """Campaign vs libbpf alone (see module rules), ``check`` 's own batch size by default."""
    config = CheckConfig(libbpf=env.target.spec, seconds=None, cases=cases, seed=seed,
                         findings=Path(tempfile.mkdtemp(prefix="sec-oracle-bench-")),
                         batch=batch, avoid_known=True)
    ops = chained_ops(env, config, cases)
    count = len(ops)
    campaign: list[float] = []
    alone: list[float] = []
    with tempfile.NamedTemporaryFile(suffix=".pickle") as ops_file:
        ops_file.write(pickle.dumps(ops))
        ops_file.flush()
        del ops  # not kept alive through the campaign rounds (its garbage collections)
        argv = [sys.executable, "-m", "oracle.campaign.bench", "inprocess", str(env.target.path),
                ops_file.name, str(batch * 16)]
        for _ in range(rounds):
            done = subprocess.run(argv, env=child_env(env.target), capture_output=True,
                                  text=True, check=False)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise OracleError(f"libbpf alone failed on the benchmark's ops ({last})")
            alone.append(count / float(done.stdout.strip().splitlines()[-1]))
            stats = run_job(env, config, 0)
            campaign.append(stats.ops / stats.seconds)
    campaign_rate, alone_rate = statistics.median(campaign), statistics.median(alone)
    return {
        "bench": "campaign",
        "target": env.target.spec,
        "version": env.version,
        "cases": cases,
        "rounds": rounds,
        "chained_ops": count,
        "campaign_ops_per_s": round(campaign_rate),
        "libbpf_alone_ops_per_s": round(alone_rate),
        "ratio": round(campaign_rate / alone_rate, 3),
    }


if __name__ == "__main__":
    if sys.argv[1] == "inprocess":
        print(time_inprocess(sys.argv[2], sys.argv[3], int(sys.argv[4])))
