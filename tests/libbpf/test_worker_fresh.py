"""``Worker.run_fresh``: each case in a forked copy of a pristine worker.

Every case sees libbpf as loaded (nothing registered, ids from 1) whatever the
cases before it did, crashes included, and the worker keeps answering.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oracle.errors import BadArgumentError
from oracle.libbpf.targets import Target
from oracle.libbpf.worker import Worker
from oracle.ops import Answer, Fault, HandleRef, Op, ProgTypeByName, Register, Unregister
from tests.targets import target_or_skip

pytestmark = pytest.mark.libbpf

CASE: list[Op] = [Register(b"abc+", 2, 0), ProgTypeByName(b"abc/x")]
CASE_ANSWERS = [Answer(1), Answer(0, (2, 0))]


@pytest.fixture(params=["system", "1.7.0", "1.7.0+asan"])
def target(request: pytest.FixtureRequest) -> Target:
    return target_or_skip(request.param)


@pytest.fixture
def worker(target: Target) -> Iterator[Worker]:
    with Worker(target, timeout=2.0) as w:
        yield w


def answers(worker: Worker, ops: list[Op]) -> list[Answer]:
    result = worker.run_fresh(ops)
    assert result.crash is None, result.crash
    return [r.answer for r in result.results]


def test_every_case_starts_from_an_empty_registry(worker: Worker) -> None:
    for _ in range(3):
        assert answers(worker, CASE) == CASE_ANSWERS


def test_a_crash_does_not_leak_into_the_next_case(worker: Worker) -> None:
    crash = worker.run_fresh([Register(b"a", 2, 0), Fault("null_out")]).crash
    assert crash is not None and crash.kind == "crash"
    assert crash.op_index == 1 and crash.ops == (Register(b"a", 2, 0), Fault("null_out"))
    assert answers(worker, CASE) == CASE_ANSWERS


def test_a_hang_is_killed_and_reported(worker: Worker) -> None:
    crash = worker.run_fresh([Register(b"a", 2, 0), Fault("hang")]).crash
    assert crash is not None and crash.kind == "hang" and crash.op_index == 1
    assert answers(worker, CASE) == CASE_ANSWERS


def test_run_batches_then_fresh_cases(worker: Worker) -> None:
    assert worker.run([Register(b"x", 1, 0)]).results[0].answer == Answer(1)
    assert answers(worker, CASE) == CASE_ANSWERS  # the dirty child was replaced


def test_handle_refs_number_the_case_alone(worker: Worker) -> None:
    assert answers(worker, [Register(b"a", 1, 0), Unregister(HandleRef(0))]) == [
        Answer(1), Answer(0)]
    with pytest.raises(BadArgumentError):
        worker.run_fresh([Unregister(HandleRef(0))])
