"""``runner.Chain`` on real libbpf: batches of cases in one chain copy, planned while
libbpf runs the previous batch, with restarts and failures in between."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oracle.campaign.generate import CaseGenerator
from oracle.campaign.runner import Chain
from oracle.libbpf.worker import Worker
from oracle.model.versions import profile
from oracle.ops import Op, ProgTypeByName, Register
from tests.targets import target_or_skip

pytestmark = pytest.mark.libbpf


@pytest.fixture
def worker() -> Iterator[Worker]:
    with Worker(target_or_skip("1.7.0"), log=False) as w:
        yield w


def test_generated_batches_conform_across_cheap_restarts(worker: Worker) -> None:
    generator = CaseGenerator(profile("1.7.0"), 7, allow_empty_sec=False)
    chain = Chain(worker, "1.7.0", anchor=False, max_ops=300)
    batches = [[generator.case(24) for _ in range(20)] for _ in range(6)]
    results, pids = [], set()
    for result in chain.stream(iter(batches)):
        results.append(result)
        pids.add(worker.pid)
    assert [r.failure for r in results] == [None] * len(results)
    assert sum(r.cases for r in results) == 120
    assert sum(r.ops for r in results) > 3 * chain.max_ops  # so the chain restarted
    assert len(pids) == 1  # restarts fork a copy: the child process stays


def test_a_failing_case_is_named_and_the_next_batch_still_runs(worker: Worker) -> None:
    # modelled as 1.1.2, run on 1.7.0: "uprobe.multi" only exists in the real library
    chain = Chain(worker, "1.1.2", anchor=False)
    ok: list[Op] = [Register(b"abc", 2, 0), ProgTypeByName(b"abc")]
    bad: list[Op] = [ProgTypeByName(b"uprobe.multi")]
    results = list(chain.stream(iter([[ok, ok], [ok, bad, ok], [ok]])))
    assert [(r.cases, r.failure is not None) for r in results] == [(2, False), (1, True),
                                                                  (1, False)]
    failed = results[1]
    assert failed.case == bad
    assert failed.failure is not None and failed.failure.divergence is not None
    assert failed.failure.signature is not None
    assert "prog_type_by_name" in failed.failure.signature


def test_a_written_signature_is_run_past_where_state_is_untouched(worker: Worker) -> None:
    chain = Chain(worker, "1.1.2", anchor=False)  # as above: "uprobe.multi" diverges
    ok: list[Op] = [Register(b"abc", 2, 0), ProgTypeByName(b"abc")]
    bad: list[Op] = [ProgTypeByName(b"uprobe.multi")]
    first = list(chain.stream(iter([[ok, bad, ok]])))
    assert first[0].failure is not None and first[0].failure.signature is not None
    signature = first[0].failure.signature
    chain.tolerated.add(signature)
    again = list(chain.stream(iter([[ok, bad, ok, bad], [ok]])))
    assert [(r.cases, r.failure) for r in again] == [(4, None), (1, None)]
    assert again[0].repeats == {signature: 2}
