"""Random lifecycle sequences (oracle.campaign.lifecycle_gen) on the oracle and on real libbpf.

Per release, ``SEQUENCES`` generated sequences run back to back in one worker
process (``concatenated``: later refs shifted) and on one oracle, compared
answer by answer, callback calls included.  A divergence is shrunk
(``oracle.campaign.shrink``) on fresh processes and the minimal op list is
printed in the failure.  Patterns known to be libbpf bugs (docs/known-bugs.md
KB3) or spec-modelled divergences (D13, D14) are excluded by the generator.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Final

import pytest

from oracle import Oracle
from oracle.campaign.compare import first_divergence
from oracle.campaign.lifecycle_gen import LifecycleGenerator, concatenated
from oracle.campaign.shrink import shrink
from oracle.errors import OracleError
from oracle.libbpf.lifecycle import NO_BPF_ENV, bpf_permitted
from oracle.libbpf.worker import Worker
from oracle.ops import Op
from tests.targets import target_or_skip

pytestmark = pytest.mark.libbpf

SEQUENCES: Final = 300
TARGETS: Final = {"system": "1.1.2", "1.4.6": "1.4.6", "1.5.0": "1.5.0", "1.7.0": "1.7.0"}



@pytest.fixture(params=list(TARGETS))
def worker(request: pytest.FixtureRequest) -> Iterator[tuple[Worker, str]]:
    with Worker(target_or_skip(str(request.param))) as w:
        yield w, TARGETS[str(request.param)]


def signature(worker: Worker, version: str, bpf: bool, ops: list[Op]) -> str | None:
    """What differs when ``ops`` run on a fresh process, or None (also for ill-formed ops)."""
    try:
        expected = Oracle(version, bpf=bpf).run(ops)
    except OracleError:
        return None  # a shrunk candidate naming a dropped Open, or outside the model
    worker.reset()
    result = worker.run(ops)
    if result.crash is not None:
        return f"crash:{result.crash.sanitizer or result.crash.signal}"
    divergence = first_divergence(ops, expected, [r.answer for r in result.results])
    return None if divergence is None else divergence.signature


def test_random_lifecycle_sequences(worker: tuple[Worker, str]) -> None:
    w, version = worker
    bpf = bpf_permitted()
    ops = concatenated(LifecycleGenerator(seed).sequence() for seed in range(SEQUENCES))
    expected = Oracle(version, bpf=bpf).run(ops)
    result = w.run(ops)
    failing = result.crash is not None
    divergence = None if failing else first_divergence(
        ops, expected, [r.answer for r in result.results])
    if not failing and divergence is None:
        return
    if result.crash is not None:
        end = result.crash.op_index + 1
    else:
        assert divergence is not None
        end = divergence.index + 1
    prefix = ops[:end]
    sig = signature(w, version, bpf, prefix)
    assert sig is not None, "the failure did not reproduce on a fresh process"
    minimal = shrink(prefix, sig, lambda c: signature(w, version, bpf, c), max_tries=400)
    lines = "\n".join(f"  {op}" for op in minimal)
    pytest.fail(f"libbpf {version} differs from the oracle ({sig}); minimal ops:\n{lines}")


@pytest.mark.parametrize("spec", ["system", "1.7.0"])
def test_without_bpf_load_and_attach_answer_no_bpf(
    spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's no-bpf() mode (forced by env) and ``Oracle(bpf=False)`` agree."""
    monkeypatch.setenv(NO_BPF_ENV, "1")
    assert os.environ[NO_BPF_ENV] == "1"
    ops = concatenated(LifecycleGenerator(seed).sequence() for seed in range(40))
    with Worker(target_or_skip(spec)) as w:
        result = w.run(ops)
    assert result.crash is None
    assert [r.answer for r in result.results] == Oracle(TARGETS[spec], bpf=False).run(ops)
