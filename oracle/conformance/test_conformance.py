"""The conformance corpus and a short campaign against real libbpf (``pytest --libbpf TARGET``).

For each target (``oracle.pytest_plugin``: ``--libbpf``, repeatable), the
recorded corpus of the release it reports (``oracle.shipped.TRACES /
<version>``) is replayed live and must conform, and a short ``check``
campaign (``CASES`` cases, seed ``SEED``) must find nothing unexplained
(known libbpf bugs are explained).  A target that cannot be had is skipped
with the reason.  The regression traces are not replayed here: a build that
still has a known bug fails them, by design (``sec-oracle replay --libbpf T``
of ``corpus/traces/regressions/`` checks a fix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from oracle.campaign.check import CheckConfig, exit_status, run_check
from oracle.pytest_plugin import version_or_skip
from oracle.replay import replay
from oracle.shipped import recorded_traces

pytestmark = pytest.mark.libbpf

CASES: Final = 300
SEED: Final = 7


def test_corpus_replays_live(libbpf_target: str) -> None:
    version = version_or_skip(libbpf_target)
    traces = recorded_traces(version)
    assert traces, f"no recorded corpus for libbpf {version}"
    result = replay(traces, libbpf=libbpf_target)
    bad = [t for t in result.traces if t.status != "conforms"]
    assert not bad, [(t.path, t.error or t.crash or t.divergences[:1]) for t in bad]


def test_short_campaign_finds_nothing_unexplained(libbpf_target: str, tmp_path: Path) -> None:
    version_or_skip(libbpf_target)
    config = CheckConfig(libbpf=libbpf_target, seconds=None, cases=CASES, seed=SEED,
                         findings=tmp_path / "findings")
    _, stats = run_check(config)
    unexplained = [f.signature for f in stats.findings.values() if f.known is None]
    assert exit_status(stats, strict=False) == 0, unexplained
